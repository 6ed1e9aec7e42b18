"""A ``/rerank`` body → the query to score, or the error response that says what is wrong.

Cheapest checks first, so a hostile body costs little: the candidate count is read off the raw
bytes (``quick_candidate_count``, one C-level scan) and bounded by the schema itself, so no
validation runs over a list past the limit (300,000 id-only candidates once took seconds).

A plainly valid body is parsed and checked by pydantic-core in one pass; any other body goes the
step by step way (parse, count, validate), which says exactly what is wrong. Pure functions with
no event loop: the app runs them inline for small bodies and in a worker thread for large ones.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from itertools import chain

from fastapi.responses import JSONResponse
from pydantic import ValidationError

from mmrank.data.formats import BadRecord
from mmrank.data.model import RankingSet
from mmrank.serve.records import parse_line, ranking_set_of
from mmrank.serve.schemas import ErrorResponse, FieldError, rerank_request

_ID_KEY = b'"candidate_id"'


@dataclass(frozen=True)
class ParsedQuery:
    """The request's JSON object (its ids are echoed from here, exactly) and its RankingSet."""

    obj: dict
    query: RankingSet


def quick_candidate_count(body: bytes) -> int:
    """How often ``"candidate_id"`` occurs in the raw body: at least the number of candidates that
    spell their id key plainly (an escaped key is caught by the exact count after parsing)."""
    return body.count(_ID_KEY)


def error_response(status: int, detail: str, errors: list[FieldError] | None = None) -> JSONResponse:
    """An ``ErrorResponse`` JSON answer."""
    return JSONResponse(ErrorResponse(detail=detail, errors=errors or []).model_dump(), status_code=status)


def invalid_response(errors: list[dict]) -> JSONResponse:
    """422 naming each field that failed validation (``candidates.0.candidate_id: Field required``);
    a body that is not JSON at all is named ``body`` with the parser's reason, and the several
    errors pydantic gives for a union field (one per member type) are said once."""
    fields: dict[str, FieldError] = {}
    expected: dict[str, list[str]] = {}
    for err in errors:
        field, member = _location(err)
        if member is not None:  # "query_id.str: ...; query_id.int: ..." → "query_id: must be a string or ..."
            kinds = expected.setdefault(field, [])
            kinds.append(_UNION_MEMBERS.get(member, member))
            fields[field] = FieldError(field=field, message="must be " + " or ".join(dict.fromkeys(kinds)))
        elif field not in fields:
            fields[field] = _field_error(err, field)
    found = list(fields.values())
    return error_response(422, "; ".join(f"{e.field}: {e.message}" for e in found[:5]), found)


# pydantic's tag of each member type of the schema's unions, in words
_UNION_MEMBERS = {"str": "a string", "int": "a number", "float": "a number", "list[float]": "a list of numbers"}


def _location(err: dict) -> tuple[str, str | None]:
    """(dotted field, the union member the error is about or None); ``body`` for the whole body."""
    loc = [str(p) for p in err.get("loc", ()) if p != "body"]
    for k, part in enumerate(loc):
        if part in _UNION_MEMBERS:
            return ".".join(loc[:k]) or "body", part
    return ".".join(loc) or "body", None


def _field_error(err: dict, field: str) -> FieldError:
    if err.get("type") == "json_invalid":  # loc is ("body", <byte offset>): not a field
        reason = (err.get("ctx") or {}).get("error", "")
        return FieldError(field="body", message=f"not valid JSON ({reason}) — send one JSON object".replace(" ()", ""))
    return FieldError(field=field, message=str(err.get("msg", "invalid")))


def parse_request(body: bytes, max_candidates: int, timings: dict[str, float] | None = None) -> ParsedQuery | JSONResponse:
    """Parse, count, validate and convert one body; any problem comes back as its response.

    With ``timings`` (a dict), the seconds spent are added under ``parse`` (JSON, candidate count,
    schema validation) and ``features`` (the record turned into the model's input, a one-query
    ``RankingSet``)."""
    t0 = time.perf_counter()
    obj = _valid_in_one_pass(body, max_candidates)
    if obj is None:  # not a plainly valid body: the step by step path says exactly what is wrong
        try:
            obj = parse_line(body)
        except BadRecord as bad:
            return _bad_record(bad)
        cands = obj.get("candidates")
        if isinstance(cands, list) and len(cands) > max_candidates:  # before the per-candidate validation
            return error_response(413, f"{len(cands)} candidates, more than the limit {max_candidates} — send the top {max_candidates}")
        try:
            rerank_request().validate_python(obj)
        except ValidationError as e:
            return invalid_response(e.errors())
    t1 = time.perf_counter()
    try:
        query = ranking_set_of(obj)
    except BadRecord as bad:
        return _bad_record(bad)
    if _infinite_id(obj):  # echoed back it would be `Infinity`: not JSON
        return _bad_record(BadRecord(INFINITE_ID, "write ids within ±1.8e308, or as strings"))
    if timings is not None:
        timings["parse"] = timings.get("parse", 0.0) + (t1 - t0)
        timings["features"] = timings.get("features", 0.0) + (time.perf_counter() - t1)
    return ParsedQuery(obj, query)


def _valid_in_one_pass(body: bytes, max_candidates: int) -> dict | None:
    """The body as a dict when it is valid JSON that passes the schema with at most
    ``max_candidates`` candidates; None otherwise, and for any body with a ``NaN``/``Infinity`` or
    ``\\u`` escape in it (then the step by step path runs).

    pydantic-core parses and checks in one pass, about half the time of parsing into Python objects
    and then validating them. Every body that is not plainly valid takes the step by step path,
    which decides its answer, so error messages never depend on this path. The skipped bodies:
    NaN and Infinity are not JSON, but the one-pass parser would take them in the fields the schema
    leaves open; and a key spelled with escapes could hide candidates from the raw-byte count the
    app makes first, while the one-pass path relies on that count to bound its work."""
    if b"NaN" in body or b"Infinity" in body or b"\\u" in body:  # inside strings too: those only take longer
        return None
    try:
        return rerank_request(max_candidates).validate_json(body)
    except ValidationError:
        return None


INFINITE_ID = "an id is a number too large for a float (it reads as infinity)"


def _infinite_id(obj: dict) -> bool:
    ids = chain((obj["query_id"],), (c["candidate_id"] for c in obj["candidates"]))
    return any(type(v) is float and math.isinf(v) for v in ids)


def _bad_record(bad: BadRecord) -> JSONResponse:
    return error_response(422, f"{bad.message} — {bad.hint}", [FieldError(field="body", message=bad.message)])

"""A ``/rerank`` body → the query to score, or the error response that says what is wrong.

Cheapest checks first, so a hostile body costs little: the candidate count is read off the raw
bytes (``quick_candidate_count``, one C-level scan) and off the parsed list before the schema
validation, which is what took seconds on 300,000 id-only candidates. Pure functions with no
event loop: the app runs them inline for small bodies and in a worker thread for large ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi.responses import JSONResponse
from pydantic import ValidationError

from mmrank.data.formats import BadRecord
from mmrank.data.model import RankingSet
from mmrank.serve.records import parse_line, ranking_set_of
from mmrank.serve.schemas import ErrorResponse, FieldError, RerankRequest

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
    a body that is not JSON at all is named ``body`` with the parser's reason."""
    fields = [_field_error(err) for err in errors]
    return error_response(422, "; ".join(f"{e.field}: {e.message}" for e in fields[:5]), fields)


def _field_error(err: dict) -> FieldError:
    if err.get("type") == "json_invalid":  # loc is ("body", <byte offset>): not a field
        reason = (err.get("ctx") or {}).get("error", "")
        return FieldError(field="body", message=f"not valid JSON ({reason}) — send one JSON object".replace(" ()", ""))
    loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
    return FieldError(field=loc or "body", message=str(err.get("msg", "invalid")))


def parse_request(body: bytes, max_candidates: int) -> ParsedQuery | JSONResponse:
    """Parse, count, validate and convert one body; any problem comes back as its response."""
    try:
        obj = parse_line(body)
    except BadRecord as bad:
        return _bad_record(bad)
    cands = obj.get("candidates")
    if isinstance(cands, list) and len(cands) > max_candidates:  # before the per-candidate validation
        return error_response(413, f"{len(cands)} candidates, more than the limit {max_candidates} — send the top {max_candidates}")
    try:
        RerankRequest.model_validate(obj)
    except ValidationError as e:
        return invalid_response(e.errors())
    try:
        return ParsedQuery(obj, ranking_set_of(obj))
    except BadRecord as bad:
        return _bad_record(bad)


def _bad_record(bad: BadRecord) -> JSONResponse:
    return error_response(422, f"{bad.message} — {bad.hint}", [FieldError(field="body", message=bad.message)])

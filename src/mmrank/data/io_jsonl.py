"""JSONL ranking files: one query per line (schema and Step5 mapping in docs/data_formats.md).

Native line::

    {"query_id": "q1", "domain": "news", "query_text": "...", "query_features": {"text": [..]},
     "candidates": [{"candidate_id": "c1", "label": 2, "baseline_score": 0.3,
                     "features": {"image": [..], "text": [..], "meta": 0.5}}]}

The seeds' Step5 ``scored.jsonl`` line is read through a fixed field mapping per candidate:
``relevance_score`` -> label, ``raw_score`` -> baseline score, ``<name>_features`` -> modality
``<name>`` (so ``image_features`` -> ``image``), ``compliance_score`` -> modality ``compliance``,
``conflict`` (bool) -> modality ``conflict``. Other fields are ignored.

A *record* is one non-blank line. ``parse_query_record`` turns one record (already parsed from
JSON) into a one-query ``RankingSet``; ``read_jsonl`` runs the same parse and checks on every
line, adding the checks across lines (duplicate query ids, one schema for the whole file).

Speed: a record whose candidates are all alike (same keys, each modality a number or a flat
number list of one length, all finite) is converted column by column, one ``np.array`` per
modality; any other record is read candidate by candidate, which is what names the exact
candidate and field of a problem. Both give identical arrays (tests/unit/test_jsonl_record_api.py;
timings in benchmarks/results/jsonl_parse.md).

The writer emits the native schema deterministically (keys in a fixed order, modalities sorted,
float32 values as their shortest exact decimal).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mmrank.data.formats import (
    FLOAT32_MAX,
    BadRecord,
    SchemaTracker,
    empty_ranking_set,
    label_value,
    read_json_lines,
    require_finite,
    short_floats,
)
from mmrank.data.model import RankingSet
from mmrank.data.validate import QueryChecker, ReadReport
from mmrank.atomic_io import atomic_write_text
from mmrank.errors import DataError

# Step5 candidate fields that map to a named modality (besides the ``<name>_features`` rule)
STEP5_SCALAR_MODALITIES = {"compliance_score": "compliance", "conflict": "conflict"}
_PLAIN_NUMBERS = (float, int)  # exact types: bool (a subclass of int) and str take the slow path
_JSON_NUMBER_TYPES = frozenset((float, int, bool))  # what the per-candidate path reads as a number
_NUMBER_KINDS = frozenset("fiub")  # array kinds of numbers: float, int, unsigned int (past int64), bool


def _number(value, what: str) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)):  # numpy's too: a record built in Python may hold them
        try:
            return float(value)
        except OverflowError:
            raise BadRecord(f"{what} is too large", "use a number that fits a float") from None
    raise BadRecord(f"{what} must be a number, got {type(value).__name__}", f"write {what} as a JSON number")


def _vector(value, what: str) -> np.ndarray:
    """A JSON number or flat list of numbers as a 1-D float64 array."""
    if isinstance(value, list):
        if not value:
            raise BadRecord(f"{what} is an empty list", f"give {what} at least one number")
        if all(type(v) in _PLAIN_NUMBERS for v in value):  # the common case, converted in one go
            try:
                out = np.array(value, dtype=np.float64)
            except OverflowError:
                raise BadRecord(f"{what} holds a number too large for a float", "use numbers that fit") from None
        else:  # names the offending value exactly
            out = np.array([_number(v, f"{what}[{k}]") for k, v in enumerate(value)], dtype=np.float64)
    elif value is None:
        raise BadRecord(f"{what} is null", f"give {what} a value, or drop the record")
    else:
        out = np.array([_number(value, what)], dtype=np.float64)
    # NaN/inf are left to the QueryChecker, which names the modality; finite values must fit float32
    if np.any(np.isfinite(out) & (np.abs(out) > FLOAT32_MAX)):
        raise BadRecord(f"{what} holds a value beyond the float32 range", "rescale the feature")
    return out


def _text_id(value, what: str, owner: str = "query") -> str:
    """An id as text; ``what`` names the field in the message (``candidate 3 candidate_id``),
    ``owner`` what must carry one in the hint (``query`` or ``candidate``)."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    field = what.rsplit(" ", 1)[-1]
    hint = f"give every {owner} a {field} (a non-empty string or a number)"
    if value == "":
        raise BadRecord(f"{what} is an empty string", hint)
    raise BadRecord(f"{what} missing or not a string/number" + ("" if value is None else f" (got {type(value).__name__})"), hint)


def _candidate_features(cand: dict, k: int) -> dict[str, np.ndarray]:
    raw = cand.get("features", {})
    if not isinstance(raw, dict):
        raise BadRecord(f"candidate {k}: 'features' must be an object", 'write "features": {"modality": [numbers]}')
    named = dict(raw)
    for key, value in cand.items():  # Step5 mapping
        if key.endswith("_features") and len(key) > len("_features"):
            named.setdefault(key[: -len("_features")], value)
        elif key in STEP5_SCALAR_MODALITIES:
            named.setdefault(STEP5_SCALAR_MODALITIES[key], value)
    return {str(name): _vector(v, f"candidate {k} modality {name!r}") for name, v in named.items()}


def _parse_query(obj, *, require_labels: bool = True, columnar: bool = True) -> dict:
    """One record's JSON object as arrays; BadRecord on anything malformed.

    The candidates go through the columnar fast path when it applies and through the
    per-candidate path otherwise (or when ``columnar`` is False); both give identical results,
    and only the per-candidate path ever reports a problem, so messages do not depend on the path."""
    if not isinstance(obj, dict):
        raise BadRecord("a line must be a JSON object", "write one query object per line")
    qid = _text_id(obj.get("query_id"), "query_id")
    domain = obj.get("domain")
    text = obj.get("query_text")
    qf_raw = obj.get("query_features") or {}
    if not isinstance(qf_raw, dict):
        raise BadRecord("'query_features' must be an object", 'write "query_features": {"name": [numbers]}')
    cands = obj.get("candidates")
    if not isinstance(cands, list):
        raise BadRecord("'candidates' missing or not a list", 'write "candidates": [{...}, ...]')
    if not cands:
        raise BadRecord("empty query: no candidates", "drop the query or add its candidates")
    columns = _columnar_candidates(cands, require_labels) if columnar else None
    if columns is None:
        columns = _per_candidate(cands, require_labels)
    return {
        "query_id": qid,
        "domain": "default" if domain is None else str(domain),
        "query_text": None if text is None else str(text),
        "query_features": {str(n): _vector(v, f"query feature {n!r}")[None, :] for n, v in qf_raw.items()},
        **columns,
    }


def _per_candidate(cands: list, require_labels: bool) -> dict:
    """The candidates one by one: slow, but names the exact candidate and field of any problem."""
    ids, labels, baselines, feats = [], [], [], []
    for k, cand in enumerate(cands):
        if not isinstance(cand, dict):
            raise BadRecord(f"candidate {k} is not an object", "write each candidate as a JSON object")
        ids.append(_text_id(cand.get("candidate_id"), f"candidate {k} candidate_id", "candidate"))
        label = cand.get("label", cand.get("relevance_score"))
        if label is None:
            if require_labels:
                raise BadRecord(f"candidate {k} has no label", "give every candidate a label (or relevance_score)")
            label = 0
        labels.append(_number(label, f"candidate {k} label"))
        base = cand.get("baseline_score", cand.get("raw_score"))
        baselines.append(None if base is None else _number(base, f"candidate {k} baseline_score"))
        feats.append(_candidate_features(cand, k))
    features = _stack(feats)
    has_base = [b is not None for b in baselines]
    if any(has_base) and not all(has_base):
        raise BadRecord("some candidates have a baseline score and some do not", "give all of them one, or none")
    return {
        "candidate_ids": ids,
        "labels": np.array(labels, dtype=np.float64),
        "baseline_scores": np.array(baselines, dtype=np.float64) if all(has_base) else None,
        "features": features,
    }


def _columnar_candidates(cands: list, require_labels: bool) -> dict | None:
    """All candidates at once, one ``np.array`` per modality; None unless the record is regular.

    Regular: every candidate is an object with the same keys in the same order (so the Step5
    mapping of candidate 0 holds for all), the same ``features`` names, string ids, a number for
    every label/score, and per modality either a number each or a flat number list of one
    length each, all finite and within float32. Anything else returns None and the
    per-candidate path reads the record, reporting any problem exactly as before. Exact types for
    the objects (a dict subclass does not pass); the numbers in a modality's lists are judged by the
    array numpy makes of them (strings, None, nested lists and integers past 64 bits make no
    number array), so whatever this path returns is what the per-candidate path would return."""
    if set(map(type, cands)) != {dict}:
        return None
    keys = tuple(cands[0])
    if not all(map(keys.__eq__, map(tuple, cands))) or "candidate_id" not in keys:  # loops in C
        return None
    ids = [c["candidate_id"] for c in cands]
    if set(map(type, ids)) != {str} or not all(ids):
        return None
    label_key = "label" if "label" in keys else "relevance_score" if "relevance_score" in keys else None
    if label_key is None:
        if require_labels:
            return None
        labels = np.zeros(len(cands), dtype=np.float64)
    else:
        labels = _number_column([c[label_key] for c in cands])
        if labels is None:
            return None
    base_key = "baseline_score" if "baseline_score" in keys else "raw_score" if "raw_score" in keys else None
    baselines = None
    if base_key is not None:
        baselines = _number_column([c[base_key] for c in cands])
        if baselines is None:
            return None
    sources = _modality_sources(cands, keys)
    if sources is None:
        return None
    features = {}
    for name, values in sources.items():
        matrix = _matrix_column(values)
        if matrix is None:
            return None
        features[name] = matrix
    return {"candidate_ids": ids, "labels": labels, "baseline_scores": baselines, "features": features}


def _modality_sources(cands: list[dict], keys: tuple) -> dict[str, list] | None:
    """Modality name -> its value in every candidate, by the same mapping as ``_candidate_features``."""
    named: dict[str, list] = {}
    if "features" in keys:
        raws = [c["features"] for c in cands]
        if set(map(type, raws)) != {dict}:
            return None
        names = tuple(raws[0])
        if not all(map(names.__eq__, map(tuple, raws))):
            return None
        named = {str(n): [r[n] for r in raws] for n in names}
    for key in keys:  # the Step5 mapping; an explicit "features" entry wins, as in the slow path
        if key.endswith("_features") and len(key) > len("_features"):
            name = key[: -len("_features")]
        elif key in STEP5_SCALAR_MODALITIES:
            name = STEP5_SCALAR_MODALITIES[key]
        else:
            continue
        if name not in named:
            named[name] = [c[key] for c in cands]
    return named


def _number_column(values: list) -> np.ndarray | None:
    """float64 array of a list of JSON numbers (bool counts as 0/1); None if any is not one."""
    if not _JSON_NUMBER_TYPES.issuperset(map(type, values)):
        return None
    try:
        return np.array(values, dtype=np.float64)
    except OverflowError:  # an integer beyond float range
        return None


def _matrix_column(values: list) -> np.ndarray | None:
    """(n, d) float64 of n flat number lists of one length d >= 1, or (n, 1) of n numbers; None
    otherwise, and None when a value is NaN/inf or beyond float32 (the slow path names it)."""
    kinds = set(map(type, values))
    if kinds == {list}:
        # numpy reads the element types as it converts (one pass, not a type scan and then a
        # conversion): JSON numbers and bools give a float, int or bool array; a string, null, an
        # integer past 64 bits or a nested list gives a string or object array, or a ValueError
        try:
            out = np.array(values)
        except ValueError:  # lists of different lengths, a list among numbers
            return None
        if out.dtype.kind not in _NUMBER_KINDS or out.ndim != 2 or out.shape[1] == 0:
            return None
        out = out.astype(np.float64, copy=False)
    elif _JSON_NUMBER_TYPES.issuperset(kinds):
        out = _number_column(values)
        if out is None:
            return None
        out = out[:, None]
    else:
        return None
    # one vectorised test: False for NaN, inf and finite values beyond float32
    if not np.all(np.abs(out) <= FLOAT32_MAX):
        return None
    return out


def _stack(feats: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if not feats:
        return {}
    names = set(feats[0])
    for k, f in enumerate(feats[1:], start=1):
        if set(f) != names:
            raise BadRecord(
                f"candidate {k} has modalities {sorted(f)}, candidate 0 has {sorted(names)}",
                "give every candidate the same modalities",
            )
    out = {}
    for name in feats[0]:  # candidate 0's order, so that the dict order never depends on string hashing
        lengths = {len(f[name]) for f in feats}
        if len(lengths) > 1:
            raise BadRecord(f"modality {name!r} has lengths {sorted(lengths)} within one query",
                            f"give every {name!r} vector the same length")
        out[name] = np.stack([f[name] for f in feats])
    return out


def parse_query_record(
    obj: dict,
    *,
    path: str | Path | None = None,
    line: int | None = None,
    checker: QueryChecker | None = None,
    require_labels: bool = True,
    columnar: bool = True,
) -> RankingSet:
    """One query record (a parsed JSONL line or request body) as a one-query ``RankingSet``.

    The same field mapping and checks as ``read_jsonl`` (which uses the same functions), for a
    record that stands alone: no duplicate-query-id or cross-record schema check; ``checker``
    (default: a fresh ``QueryChecker``) carries the label range and the modality dims of earlier
    records when the caller wants them checked.

    ``require_labels=False`` is for serving, where queries have no relevance labels yet: a
    candidate with neither ``label`` nor ``relevance_score`` (or with it null) gets label 0. A
    label that is given must still be a number.

    ``columnar=False`` forces the per-candidate path (tests and benchmarks compare the two; the
    results are identical either way, the columnar path is only faster).

    Raises ``DataError`` (``path:line: what is wrong — what to do``) on a bad record.
    """
    try:
        query = _parse_query(obj, require_labels=require_labels, columnar=columnar)
        _check(query, checker or QueryChecker())
    except BadRecord as bad:
        raise DataError(bad.message, path=path, line=line, hint=bad.hint) from None
    return _assemble([query])


def _check(query: dict, checker: QueryChecker) -> None:
    """BadRecord with the first problem ``checker`` finds in a parsed query."""
    problems = checker.problems(query["candidate_ids"], query["labels"], query["features"],
                                query["query_features"], query["baseline_scores"])
    if problems:
        raise BadRecord(*problems[0])


def read_jsonl(
    path: str | Path, *, strict: bool = False, label_range: tuple[float, float] | None = None
) -> tuple[RankingSet, ReadReport]:
    """Read a JSONL ranking file (native schema or Step5 shape), quarantining bad lines."""
    path = Path(path)
    report = ReadReport(str(path), strict=strict)
    checker = QueryChecker(label_range)
    schema = SchemaTracker()
    seen_qids: dict[str, int] = {}
    queries: list[dict] = []

    def accept(no: int, obj) -> None:
        q = _parse_query(obj)
        if q["query_id"] in seen_qids:
            raise BadRecord(f"query_id {q['query_id']!r} already used at line {seen_qids[q['query_id']]}",
                            "give every query its own id (merge the candidates into one line)")
        problem = schema.problem(q["features"], q["query_features"], q["baseline_scores"] is not None)
        if problem:
            raise BadRecord(*problem)
        _check(q, checker)
        schema.accept(q["features"], q["query_features"], q["baseline_scores"] is not None)
        seen_qids[q["query_id"]] = no
        queries.append(q)

    read_json_lines(path, report, accept)
    return _assemble(queries), report


def _assemble(queries: list[dict]) -> RankingSet:
    if not queries:
        return empty_ranking_set()
    sizes = [len(q["candidate_ids"]) for q in queries]
    texts = [q["query_text"] for q in queries]
    first = queries[0]
    return RankingSet(
        query_ids=[q["query_id"] for q in queries],
        offsets=np.concatenate([[0], np.cumsum(sizes)]),
        candidate_ids=[c for q in queries for c in q["candidate_ids"]],
        labels=np.concatenate([q["labels"] for q in queries]),
        domains=[q["domain"] for q in queries],
        baseline_scores=(
            np.concatenate([q["baseline_scores"] for q in queries]) if first["baseline_scores"] is not None else None
        ),
        features={k: np.concatenate([q["features"][k] for q in queries]) for k in first["features"]},
        query_features={k: np.concatenate([q["query_features"][k] for q in queries]) for k in first["query_features"]},
        query_texts=texts if any(t is not None for t in texts) else None,
    )


def _rows(matrix: np.ndarray) -> list[list[float]]:
    d = matrix.shape[1]
    flat = short_floats(matrix)
    return [flat[i * d:(i + 1) * d] for i in range(matrix.shape[0])]


def jsonl_lines(rset: RankingSet) -> list[str]:
    """The native-schema JSON text of each query (no newline), deterministic."""
    feats = {k: _rows(rset.features[k]) for k in sorted(rset.features)}
    qfeats = {k: _rows(rset.query_features[k]) for k in sorted(rset.query_features)}
    lines = []
    for i in range(rset.n_queries):
        a, b = int(rset.offsets[i]), int(rset.offsets[i + 1])
        obj: dict = {"query_id": str(rset.query_ids[i]), "domain": str(rset.domains[i])}
        if rset.query_texts is not None and rset.query_texts[i] is not None:
            obj["query_text"] = str(rset.query_texts[i])
        if qfeats:
            obj["query_features"] = {k: rows[i] for k, rows in qfeats.items()}
        cands = []
        for r in range(a, b):
            c: dict = {"candidate_id": str(rset.candidate_ids[r]), "label": label_value(rset.labels[r])}
            if rset.baseline_scores is not None:
                c["baseline_score"] = float(rset.baseline_scores[r])
            c["features"] = {k: rows[r] for k, rows in feats.items()}
            cands.append(c)
        obj["candidates"] = cands
        lines.append(json.dumps(obj, ensure_ascii=False))
    return lines


def write_jsonl(rset: RankingSet, path: str | Path) -> Path:
    """Write ``rset`` as native-schema JSONL (atomically)."""
    require_finite(rset, path)
    return atomic_write_text(path, "".join(line + "\n" for line in jsonl_lines(rset)))

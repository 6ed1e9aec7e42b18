"""JSONL ranking files: one query per line (schema and Step5 mapping in docs/data_formats.md).

Native line::

    {"query_id": "q1", "domain": "news", "query_text": "...", "query_features": {"text": [..]},
     "candidates": [{"candidate_id": "c1", "label": 2, "baseline_score": 0.3,
                     "features": {"image": [..], "text": [..], "meta": 0.5}}]}

The seeds' Step5 ``scored.jsonl`` line is read through a fixed field mapping, candidate by
candidate: ``relevance_score`` -> label, ``raw_score`` -> baseline score, ``<name>_features``
-> modality ``<name>`` (so ``image_features`` -> ``image``), ``compliance_score`` -> modality
``compliance``, ``conflict`` (bool) -> modality ``conflict``. Other fields are ignored.

A *record* is one non-blank line. The writer emits the native schema deterministically (keys in
a fixed order, modalities sorted, float32 values as their shortest exact decimal).
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
    iter_lines,
    label_value,
    raw_text,
    read_bytes,
    require_finite,
    short_floats,
)
from mmrank.data.model import RankingSet
from mmrank.data.validate import QueryChecker, ReadReport, atomic_write_text

# Step5 candidate fields that map to a named modality (besides the ``<name>_features`` rule)
STEP5_SCALAR_MODALITIES = {"compliance_score": "compliance", "conflict": "conflict"}
_PLAIN_NUMBERS = (float, int)  # exact types: bool (a subclass of int) and str take the slow path


def _number(value, what: str) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
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


def _text_id(value, what: str) -> str:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise BadRecord(f"{what} missing or not a string/number", f"give every record a {what}")


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


def _parse_query(obj) -> dict:
    """One line's JSON object as arrays; BadRecord on anything malformed."""
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
    ids, labels, baselines, feats = [], [], [], []
    for k, cand in enumerate(cands):
        if not isinstance(cand, dict):
            raise BadRecord(f"candidate {k} is not an object", "write each candidate as a JSON object")
        ids.append(_text_id(cand.get("candidate_id"), f"candidate {k} candidate_id"))
        label = cand.get("label", cand.get("relevance_score"))
        if label is None:
            raise BadRecord(f"candidate {k} has no label", "give every candidate a label (or relevance_score)")
        labels.append(_number(label, f"candidate {k} label"))
        base = cand.get("baseline_score", cand.get("raw_score"))
        baselines.append(None if base is None else _number(base, f"candidate {k} baseline_score"))
        feats.append(_candidate_features(cand, k))
    features = _stack(feats)
    has_base = [b is not None for b in baselines]
    if any(has_base) and not all(has_base):
        raise BadRecord("some candidates have a baseline score and some do not", "give all of them one, or none")
    return {
        "query_id": qid,
        "domain": "default" if domain is None else str(domain),
        "query_text": None if text is None else str(text),
        "query_features": {str(n): _vector(v, f"query feature {n!r}")[None, :] for n, v in qf_raw.items()},
        "candidate_ids": ids,
        "labels": labels,
        "baseline_scores": baselines if all(has_base) and baselines else None,
        "features": features,
    }


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
    for name in names:
        lengths = {len(f[name]) for f in feats}
        if len(lengths) > 1:
            raise BadRecord(f"modality {name!r} has lengths {sorted(lengths)} within one query",
                            f"give every {name!r} vector the same length")
        out[name] = np.stack([f[name] for f in feats])
    return out


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
    for no, text, raw in iter_lines(read_bytes(path)):
        report.records_in += 1
        try:
            if text is None:
                raise BadRecord("line is not UTF-8 text", "save the file as UTF-8")
            try:
                obj = json.loads(text)
            except (ValueError, RecursionError) as e:
                raise BadRecord(f"not valid JSON ({str(e)[:80]})", "write one JSON object per line") from None
            q = _parse_query(obj)
            if q["query_id"] in seen_qids:
                raise BadRecord(f"query_id {q['query_id']!r} already used at line {seen_qids[q['query_id']]}",
                                "give every query its own id (merge the candidates into one line)")
            problem = schema.problem(q["features"], q["query_features"], q["baseline_scores"] is not None)
            if problem:
                raise BadRecord(*problem)
            problems = checker.problems(q["candidate_ids"], q["labels"], q["features"], q["query_features"],
                                        q["baseline_scores"])
            if problems:
                raise BadRecord(*problems[0])
        except BadRecord as bad:
            report.bad(no, bad.message, bad.hint, raw_text(raw))
            continue
        schema.accept(q["features"], q["query_features"], q["baseline_scores"] is not None)
        seen_qids[q["query_id"]] = no
        queries.append(q)
        report.records_read += 1
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
        labels=[x for q in queries for x in q["labels"]],
        domains=[q["domain"] for q in queries],
        baseline_scores=(
            [x for q in queries for x in q["baseline_scores"]] if first["baseline_scores"] is not None else None
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

"""The retrieval query file: one JSON object a line (docs/retrieval.md).

    {"query_id": "u1", "embedding": [0.1, ...]}                         a query embedding, or
    {"query_id": "u2", "history": ["50", "172", "1"], "exclude": ["7"]}  item ids, most recent first

plus optional ``"targets": {"item id": label}`` (labels of the candidates; recall is measured
when present). A history query excludes its history items unless ``"exclude"`` says otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmrank.data.formats import iter_lines, read_bytes
from mmrank.data.validate import is_finite_number
from mmrank.errors import DataError
from mmrank.retrieval.index import VectorIndex
from mmrank.retrieval.vectors import history_vectors


@dataclass
class QueryFile:
    """Parsed queries: ids, vectors ``(Q, d)``, excluded rows and targets per query."""

    query_ids: list[str] = field(default_factory=list)
    vectors: np.ndarray | None = None
    exclude: list[np.ndarray] = field(default_factory=list)
    targets: list[dict[str, float]] | None = None


def _ids(value, what: str, row_of: dict[str, int], where: tuple[Path, int]) -> np.ndarray:
    if not isinstance(value, list):
        raise DataError(f"{what!r} must be a list of item ids", path=where[0], line=where[1], hint="e.g. [\"50\", \"172\"]")
    unknown = [str(v) for v in value if str(v) not in row_of]
    if unknown:
        raise DataError(f"{what} item {unknown[0]!r} is not in the index", path=where[0], line=where[1],
                        hint="use the item ids the index was built from")
    return np.array([row_of[str(v)] for v in value], dtype=np.int64)


def read_query_file(path: str | Path, index: VectorIndex, recency_decay: float = 1.0) -> QueryFile:
    """Read and embed every query of ``path`` against ``index``; the first bad line raises
    ``DataError`` (``path:line: what — hint``), so nothing is retrieved for a half-read file."""
    path = Path(path)
    row_of = {str(i): r for r, i in enumerate(index.item_ids)}
    out = QueryFile(targets=[])
    vectors, histories, kinds = [], [], []
    for no, text, _ in iter_lines(read_bytes(path)):
        where = (path, no)
        try:
            obj = json.loads(text or "")
        except ValueError:
            raise DataError("not a JSON object", path=path, line=no, hint="write one query object per line") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("query_id"), (str, int)):
            raise DataError("a query needs a \"query_id\"", path=path, line=no, hint="add a string query_id")
        if ("embedding" in obj) == ("history" in obj):
            raise DataError("give exactly one of \"embedding\" or \"history\"", path=path, line=no,
                            hint="an embedding vector, or the user's item ids (most recent first)")
        if "embedding" in obj:
            emb = obj["embedding"]
            if not isinstance(emb, list) or len(emb) != index.dim or not all(is_finite_number(v) for v in emb):
                raise DataError(f"\"embedding\" must be {index.dim} finite numbers", path=path, line=no,
                                hint="embed the query like the index's items")
            vectors.append(np.asarray(emb, dtype=np.float32))
            histories.append(np.zeros(0, dtype=np.int64))
        else:
            histories.append(_ids(obj["history"], "history", row_of, where))
            vectors.append(None)
        exclude = obj.get("exclude")
        out.exclude.append(histories[-1] if exclude is None else _ids(exclude, "exclude", row_of, where))
        targets = obj.get("targets", {})
        if not isinstance(targets, dict) or not all(is_finite_number(v) for v in targets.values()):
            raise DataError("\"targets\" must map item ids to numeric labels", path=path, line=no, hint="or leave it out")
        out.targets.append({str(k): float(v) for k, v in targets.items()})
        out.query_ids.append(str(obj["query_id"]))
    if not out.query_ids:
        raise DataError("no queries in the file", path=path, hint="write one query object per line")
    from_history = history_vectors(index.vectors, histories, recency_decay)
    out.vectors = np.stack([v if v is not None else from_history[n] for n, v in enumerate(vectors)])
    if not any(out.targets):
        out.targets = None
    return out

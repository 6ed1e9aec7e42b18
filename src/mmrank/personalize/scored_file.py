"""Personalise a scored JSONL file (the output of ``mmrank rerank``) line by line.

Each line's candidates carry the reranker's ``score`` (``null`` past top-M: those keep their
place below the scored ones) and their modalities; the user is taken from the query id by a
regular expression. The output line is the input with its candidates reordered by the
personalised score, each candidate annotated with ``personal_score``, and the query with
``personalisation: {user, beta, weights}``. A bad line stops the run (``path:line: ...``, exit 2)
before anything is written.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from mmrank.atomic_io import atomic_write_text
from mmrank.data.formats import iter_lines, read_bytes
from mmrank.data.io_jsonl import parse_query_record
from mmrank.errors import ConfigError, DataError
from mmrank.personalize.profiles import PreferenceProfiles
from mmrank.personalize.reweight import personalised_scores


def user_of(query_id: str, pattern: re.Pattern) -> str:
    """The user id in ``query_id``: the pattern's first group (the whole id when it does not match)."""
    m = pattern.match(query_id)
    return m.group(1) if m and m.groups() else query_id


def _scores(cands: list, path: Path, line: int) -> np.ndarray:
    raw = [c.get("score") for c in cands]
    if any(s is not None and not isinstance(s, (int, float)) for s in raw):
        raise DataError("a candidate score is not a number", path=path, line=line, hint="personalise `mmrank rerank` output")
    if all(s is None for s in raw):
        raise DataError("no candidate has a score", path=path, line=line, hint="personalise `mmrank rerank` output")
    low = min(s for s in raw if s is not None) - 1.0
    # Unscored candidates (past top-M) stay below the scored ones, in their listed order.
    return np.array([s if s is not None else low - n * 1e-9 for n, s in enumerate(raw)], dtype=np.float64)


def personalise_file(profiles: PreferenceProfiles, in_path: str | Path, out_path: str | Path, *,
                     beta: float | None = None, user_pattern: str = r"^([^@]+)") -> dict:
    """Reorder every query of ``in_path`` by its user's personalised scores into ``out_path``.

    Returns:
        Counts: ``queries``, ``with_profile`` (users that had a profile), ``reordered`` (queries
        whose order changed), ``beta``.
    """
    beta = profiles.beta if beta is None else float(beta)
    try:
        pattern = re.compile(user_pattern)
    except re.error as e:
        raise ConfigError(f"--user-pattern {user_pattern!r} is not a regular expression ({e})") from None
    in_path = Path(in_path)
    lines, counts = [], {"queries": 0, "with_profile": 0, "reordered": 0, "beta": beta}
    for no, text, _ in iter_lines(read_bytes(in_path)):
        try:
            obj = json.loads(text or "")
        except ValueError:
            raise DataError("not valid JSON", path=in_path, line=no, hint="personalise `mmrank rerank` output") from None
        rset = parse_query_record(obj, path=in_path, line=no, require_labels=False)
        if profiles.spec.modality not in rset.features:
            raise DataError(f"candidates lack the {profiles.spec.modality!r} modality", path=in_path, line=no,
                            hint="the attributes are read from the candidates' own features")
        user = user_of(str(rset.query_ids[0]), pattern)
        weights = profiles.weights_for([user])
        scores = _scores(obj["candidates"], in_path, no)
        personal = personalised_scores(scores, rset.offsets, profiles.spec.matrix(rset.features[profiles.spec.modality]),
                                       weights, beta)
        order = np.argsort(-personal, kind="stable")
        counts["queries"] += 1
        counts["with_profile"] += int(user in profiles.weights)
        counts["reordered"] += int(not np.array_equal(order, np.argsort(-scores, kind="stable")))
        cands = obj["candidates"]
        obj["candidates"] = [{**cands[i], "personal_score": float(personal[i])} for i in order]
        obj["personalisation"] = {"user": user, "beta": beta, "weights": dict(zip(profiles.spec.names, weights[0].round(4).tolist()))}
        lines.append(json.dumps(obj, separators=(",", ":")))
    if not lines:
        raise DataError("no queries in the file", path=in_path, hint="personalise `mmrank rerank` output")
    atomic_write_text(out_path, "".join(line + "\n" for line in lines))
    return counts

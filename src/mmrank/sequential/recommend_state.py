"""What ``mmrank recommend`` keeps in a run directory, so that answering for a user never
re-reads or re-splits the data set.

``RUN/recommend/`` holds

* ``seen.safetensors`` (``indptr``, ``items``): every user's seen items (train, valid and test
  events) in the run's dense ids, CSR over the run's users — written by training;
* ``ids.json``: the run's user and item ids (dense order), ``titles`` (``{item id: title}``, or
  null when the data has no item file with titles) and the data fingerprint — written by training;
* ``top.safetensors`` + ``top.json``: each user's top ``TOP_K`` unseen items and scores, computed
  once by the first ``recommend`` call (one scoring pass over all users) and stamped with the
  model file's size and modification time, so a changed model is never answered from a stale
  cache. Later calls read one row of it: no torch, no model, no data (well under a second).

Only numpy, JSON and safetensors here: reading the cache imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from mmrank.atomic_io import atomic_write_bytes, atomic_write_text
from mmrank.errors import UnknownIdError

STATE_DIR = "recommend"
SEEN, IDS, TOP, TOP_META = "seen.safetensors", "ids.json", "top.safetensors", "top.json"
TOP_K = 100
MODEL_FILE = "model.safetensors"


def write_recommend_state(run_dir: str | Path, data, item_features: str | Path | None = None) -> Path:
    """Write ``seen.safetensors`` and ``ids.json`` for a run trained on ``data`` (a
    ``SequenceData``: its split's dense ids are the run's). Titles come from the data's item
    file, else from the item-feature folder (``mmrank data item-features --title-column``)."""
    from safetensors.numpy import save

    folder = Path(run_dir) / STATE_DIR
    split = data.split
    seen = split.full_history()
    atomic_write_bytes(folder / SEEN, save({"indptr": seen.indptr.astype(np.int64), "items": seen.items.astype(np.int32)}))
    titles = _titles(data.catalogue)
    if titles is None and item_features is not None:
        titles = _titles(_folder_titles(Path(item_features)))
    ids = {"users": [str(u) for u in split.users.ids], "items": [str(i) for i in split.items.ids],
           "titles": titles, "data_fingerprint": data.data_fingerprint, "data": data.inter_path}
    atomic_write_text(folder / IDS, json.dumps(ids, ensure_ascii=False))
    return folder


def _titles(items) -> dict[str, str] | None:
    if items is None or items.titles is None:
        return None
    return {str(i): str(t) for i, t in zip(items.item_ids, items.titles)}


def _folder_titles(folder: Path):
    """The titles of an item-feature folder's ``items.json`` (as a light ``ItemFeatures``), or None."""
    from mmrank.data.model import ItemFeatures

    meta = folder / "items.json"
    if not meta.is_file():
        return None
    info = json.loads(meta.read_text(encoding="utf-8"))
    return None if not info.get("titles") else ItemFeatures(info["item_ids"], titles=info["titles"])


def _stamp(run_dir: Path) -> dict:
    st = (run_dir / MODEL_FILE).stat()
    return {"model_bytes": st.st_size, "model_mtime_ns": st.st_mtime_ns}


@dataclass
class RecommendState:
    """A run's ``recommend/`` folder, read lazily (the seen items only when needed)."""

    run_dir: Path
    ids: dict

    @classmethod
    def load(cls, run_dir: str | Path) -> "RecommendState | None":
        """The state of ``run_dir``, or None for a run trained before it was written."""
        run_dir = Path(run_dir)
        path = run_dir / STATE_DIR / IDS
        if not path.is_file() or not (run_dir / STATE_DIR / SEEN).is_file():
            return None
        return cls(run_dir, json.loads(path.read_text(encoding="utf-8")))

    @property
    def folder(self) -> Path:
        """``RUN/recommend``."""
        return self.run_dir / STATE_DIR

    def user_row(self, user: str) -> int:
        """The dense row of ``user``; UnknownIdError naming the run when it has no such user."""
        try:
            return self.ids["users"].index(str(user))
        except ValueError:
            raise UnknownIdError(f"unknown user id {user!r}: not a user of this run", path=f"--user (users of {self.run_dir})",
                                 hint="use a user id that has training interactions, or retrain with this user's events") from None

    def seen(self):
        """Every user's seen items as ``Histories`` in the run's dense ids."""
        from safetensors.numpy import load_file

        from mmrank.sequential.data import Histories

        t = load_file(str(self.folder / SEEN))
        return Histories(t["indptr"].astype(np.int64), t["items"].astype(np.int64))

    def cached_top(self, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """``(items (U, K) dense ids, 0 = none; scores (U, K))`` when the cache is fresh and
        holds at least ``k`` per user, else None."""
        from safetensors.numpy import load_file

        meta_path = self.folder / TOP_META
        if not meta_path.is_file() or not (self.folder / TOP).is_file():
            return None
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("stamp") != _stamp(self.run_dir) or meta.get("k", 0) < k:
            return None
        t = load_file(str(self.folder / TOP))
        return t["items"], t["scores"]

    def build_top(self, ranker, k: int, progress: Callable[[int, int], None] | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Score every user once (seen items masked) and keep the top ``k``; written to the cache
        when the run directory is writable."""
        import torch

        from safetensors.numpy import save

        seen = self.seen()
        n_users, n_cols = seen.n_users, len(self.ids["items"]) + 1
        k = min(k, n_cols - 1)
        items = np.zeros((n_users, k), dtype=np.int32)
        scores = np.full((n_users, k), -np.inf, dtype=np.float32)
        chunk = 256
        session = getattr(ranker, "scoring_session", None)
        with (session() if session else contextlib.nullcontext()), torch.inference_mode():
            for start in range(0, n_users, chunk):
                users = np.arange(start, min(start + chunk, n_users))
                s = torch.as_tensor(ranker.score_users(torch.as_tensor(users), seen)).double().clone()
                s[:, 0] = float("-inf")
                rows = torch.as_tensor(np.repeat(np.arange(len(users)), seen.lengths()[users]))
                cols = torch.as_tensor(np.concatenate([seen.of(u) for u in users]))
                s[rows, cols] = float("-inf")
                top = torch.topk(s, k, dim=1)
                items[users] = torch.where(torch.isfinite(top.values), top.indices, 0).numpy()
                scores[users] = top.values.float().numpy()
                if progress:
                    progress(int(users[-1]) + 1, n_users)
        try:
            atomic_write_bytes(self.folder / TOP, save({"items": items, "scores": scores}))
            atomic_write_text(self.folder / TOP_META, json.dumps({"k": k, "stamp": _stamp(self.run_dir)}))
        except OSError:
            pass  # a read-only run directory: answer anyway, the next call scores again
        return items, scores

    def answer(self, top: tuple[np.ndarray, np.ndarray], user: str, k: int) -> list[dict]:
        """Rows ``{"rank", "item_id", "title", "score"}`` of ``user`` (title None without titles)."""
        row = self.user_row(user)
        items, scores = top[0][row], top[1][row]
        titles = self.ids.get("titles")
        out = []
        for r, (d, sc) in enumerate(zip(items[:k].tolist(), scores[:k].tolist()), 1):
            if d == 0:
                break  # the user has seen every other item
            item = self.ids["items"][d - 1]
            out.append({"rank": r, "item_id": item, "title": None if titles is None else titles.get(item), "score": sc})
        return out

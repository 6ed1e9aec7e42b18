"""Baselines every learned ranker must beat: the seeds' V1 heuristic and LightGBM LambdaMART.

Both follow the Ranker protocol (``fit`` → self, pure ``score`` → (N,), ``save``/``load``) and
store JSON + text only (LightGBM's own text model format): nothing is pickled.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import Field

from mmrank.atomic_io import atomic_write_text
from mmrank.config import Strict
from mmrank.data.model import RankingSet
from mmrank.errors import DataError
from mmrank.models.params import WithParams
from mmrank.models.storage import read_manifest, sha256_bytes


def _write_json(path: Path, obj: dict) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


class HeuristicBaseline(WithParams):
    """The seeds' V1 scorer: ``cos(query, candidate) + w_c·compliance − w_n·conflict``.

    The query/candidate embedding pair is ``query_features[query_feature]`` and
    ``features[candidate_feature]`` (by default the first query feature that has a candidate
    modality of the same name and dimension). Without such a pair it falls back to the
    ``baseline_scores`` column, so it always reproduces "what the system did before".
    """

    kind = "heuristic"

    class Params(Strict):
        w_compliance: float = 0.1
        w_conflict: float = 0.5
        query_feature: str | None = None
        candidate_feature: str | None = None
        compliance_feature: str = "compliance"
        conflict_feature: str = "conflict"

    def fit(self, train: RankingSet, valid: RankingSet | None = None) -> "HeuristicBaseline":
        """Return the baseline unchanged: nothing is learned, the weights are the heuristic.

        ``fit`` exists so the baseline can stand wherever a model can (audit, evaluate, serve).

        Args:
            train: ignored.
            valid: ignored.

        Returns:
            ``self``.
        """
        # Nothing is learned: the weights are the heuristic. fit exists so the baseline can stand
        # wherever a model can (audit, evaluate, serve).
        return self

    def _embedding_pair(self, rset: RankingSet) -> tuple[str, str] | None:
        if self.params.query_feature:  # named: that query feature, with its namesake by default
            return self.params.query_feature, self.params.candidate_feature or self.params.query_feature
        for name, qmat in rset.query_features.items():
            cand = self.params.candidate_feature or name
            if cand in rset.features and rset.features[cand].shape[1] == qmat.shape[1]:
                return name, cand
        return None

    def score(self, rset: RankingSet) -> np.ndarray:
        """Score candidates with ``cos(query, candidate) + w_c·compliance − w_n·conflict``.

        The cosine is taken between the query's embedding (broadcast to its candidates) and the
        candidate's; a zero vector on either side gives cosine 0. Without an embedding pair the base is
        ``baseline_scores``. The compliance / conflict terms read column 0 of those modalities and are
        added only when the data has them.

        Args:
            rset: the data to score.

        Returns:
            (N,) float64 scores in ``rset``'s candidate order.

        Raises:
            DataError: when the configured pair is missing from the data, or there is neither an
                embedding pair nor a baseline score.

        Example:
            >>> scores = HeuristicBaseline().fit(train).score(test)  # doctest: +SKIP
        """
        pair = self._embedding_pair(rset)
        if pair is not None:
            qname, cname = pair
            if qname not in rset.query_features or cname not in rset.features:
                raise DataError(
                    f"heuristic needs query feature {qname!r} and candidate modality {cname!r}",
                    hint=f"the data has query features {sorted(rset.query_features)} and modalities {sorted(rset.features)}",
                )
            q = rset.query_features[qname][rset.query_index].astype(np.float64)
            c = rset.features[cname].astype(np.float64)
            denom = np.linalg.norm(q, axis=1) * np.linalg.norm(c, axis=1)
            base = np.where(denom > 0, np.sum(q * c, axis=1) / np.where(denom > 0, denom, 1.0), 0.0)
        elif rset.baseline_scores is not None:
            base = rset.baseline_scores.astype(np.float64).copy()
        else:
            raise DataError(
                "heuristic baseline has nothing to score with: no query/candidate embedding pair and no baseline_score",
                hint="add query_features with a matching candidate modality, or baseline scores",
            )
        if self.params.compliance_feature in rset.features:
            base = base + self.params.w_compliance * rset.features[self.params.compliance_feature][:, 0]
        if self.params.conflict_feature in rset.features:
            base = base - self.params.w_conflict * rset.features[self.params.conflict_feature][:, 0]
        return base

    def save(self, directory: str | Path) -> None:
        """Write ``model.json`` (kind and parameters: all the baseline consists of) into ``directory``.

        Args:
            directory: the run directory (created if needed).
        """
        _write_json(Path(directory) / "model.json", {"kind": self.kind, "params": self.get_params()})

    @classmethod
    def load(cls, directory: str | Path) -> "HeuristicBaseline":
        """Rebuild the baseline from the parameters in ``directory/model.json``.

        Args:
            directory: the run directory.

        Returns:
            The baseline.

        Raises:
            DataError: when ``model.json`` is missing, unreadable, or written by another kind.
        """
        return cls(**read_manifest(directory, cls.kind)["params"])


class LambdaMART(WithParams):
    """LightGBM ``lambdarank`` on the flat feature matrix (all modalities + query features).

    Early-stops on validation nDCG@``eval_at`` when a validation set is given. ``deterministic``
    and a fixed ``seed`` make the fit reproducible on CPU."""

    kind = "lambdamart"

    class Params(Strict):
        n_estimators: int = Field(500, ge=1)
        learning_rate: float = Field(0.05, gt=0)
        num_leaves: int = Field(31, ge=2)
        min_data_in_leaf: int = Field(20, ge=1)
        feature_fraction: float = Field(1.0, gt=0, le=1)
        eval_at: int = Field(10, ge=1)
        early_stopping_rounds: int = Field(50, ge=1)
        seed: int = 0
        num_threads: int = Field(0, ge=0)
        modalities: list[str] | None = None

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.booster_ = None
        self.input_dims_: dict[str, int] | None = None

    def _dims(self, rset: RankingSet) -> dict[str, int]:
        names = sorted(rset.features) if self.params.modalities is None else sorted(self.params.modalities)
        missing = [n for n in names if n not in rset.features]
        if missing:
            raise DataError(f"LambdaMART needs modalities {missing} that the data lacks", hint=f"the data has {sorted(rset.features)}")
        dims = {f"features.{n}": rset.features[n].shape[1] for n in names}
        dims.update({f"query_features.{n}": d for n, d in sorted(rset.query_feature_dims.items())})
        return dims

    def _matrix(self, rset: RankingSet) -> np.ndarray:
        dims = self._dims(rset)
        if self.input_dims_ is not None and dims != self.input_dims_:
            raise DataError(
                f"data modalities {dims} differ from the ones the model was trained on {self.input_dims_}",
                hint="score data with the same modalities and dimensions as the training data",
            )
        names = sorted(rset.features) if self.params.modalities is None else sorted(self.params.modalities)
        return rset.feature_matrix(names)

    @staticmethod
    def _int_labels(rset: RankingSet) -> np.ndarray:
        lab = rset.labels
        if np.any(lab < 0) or np.any(lab != np.round(lab)):
            raise DataError(
                "LambdaMART needs non-negative integer relevance grades",
                hint="round or rank-encode the labels (e.g. 0..4)",
            )
        return lab.astype(np.int64)

    def fit(self, train: RankingSet, valid: RankingSet | None = None) -> "LambdaMART":
        """Train a LightGBM ``lambdarank`` booster on the flat feature matrix, one group per query.

        Gains are ``2^grade − 1`` for every grade (LightGBM's default table stops at grade 30), so the
        optimised nDCG is the exponential-gain one the project reports. With a non-empty ``valid`` set it
        early-stops on validation nDCG@``eval_at``; ``deterministic`` and ``force_row_wise`` with the
        fixed ``seed`` make the fit reproducible on CPU.

        Args:
            train: training queries; labels must be non-negative integers.
            valid: optional validation queries for early stopping.

        Returns:
            ``self``, with ``booster_`` and the input widths ``input_dims_`` set.

        Raises:
            DataError: when a configured modality is missing, labels are negative or not integral, or
                ``valid`` has other modality widths than ``train``.

        Example:
            >>> model = LambdaMART(n_estimators=200).fit(train, valid)  # doctest: +SKIP
            >>> scores = model.score(test)  # doctest: +SKIP
        """
        import lightgbm as lgb

        self.input_dims_ = None
        self.input_dims_ = self._dims(train)
        max_label = int(self._int_labels(train).max(initial=0))
        params = {
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": [self.params.eval_at],
            "learning_rate": self.params.learning_rate,
            "num_leaves": self.params.num_leaves,
            "min_data_in_leaf": self.params.min_data_in_leaf,
            "feature_fraction": self.params.feature_fraction,
            "seed": self.params.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.params.num_threads,
            "verbosity": -1,
            # Gains 2^rel - 1 for every grade present, as nDCG with exponential gain expects.
            "label_gain": [float(2**g - 1) for g in range(max(max_label + 1, 32))],
        }
        dtrain = lgb.Dataset(self._matrix(train), self._int_labels(train), group=train.group_sizes, free_raw_data=True)
        valid_sets, callbacks = [], []
        if valid is not None and valid.n_queries:
            dvalid = lgb.Dataset(self._matrix(valid), self._int_labels(valid), group=valid.group_sizes, reference=dtrain)
            valid_sets = [dvalid]
            callbacks = [lgb.early_stopping(self.params.early_stopping_rounds, verbose=False)]
        self.booster_ = lgb.train(params, dtrain, num_boost_round=self.params.n_estimators, valid_sets=valid_sets, callbacks=callbacks)
        return self

    def score(self, rset: RankingSet) -> np.ndarray:
        """Predict with the booster, up to the early-stopping best iteration when there is one.

        Args:
            rset: data with the modalities and widths the model was trained on.

        Returns:
            (N,) float64 scores in ``rset``'s candidate order.

        Raises:
            DataError: when the model is not fitted or the data's modalities or widths differ.
        """
        if self.booster_ is None:
            raise DataError("LambdaMART is not fitted", hint="call fit() or load a trained run")
        best = self.booster_.best_iteration or None
        return np.asarray(self.booster_.predict(self._matrix(rset), num_iteration=best), dtype=np.float64)

    def save(self, directory: str | Path) -> None:
        """Write the booster in LightGBM's text format (``model.txt``, cut at the best iteration) and
        ``model.json`` (parameters, input widths, sha256 of ``model.txt``).

        Text, not pickle: the file is portable across LightGBM builds and safe to load.

        Args:
            directory: the run directory (created if needed).

        Raises:
            DataError: when the model is not fitted.
        """
        if self.booster_ is None:
            raise DataError("cannot save an unfitted LambdaMART")
        directory = Path(directory)
        text = self.booster_.model_to_string(num_iteration=self.booster_.best_iteration or None)
        atomic_write_text(directory / "model.txt", text)
        _write_json(
            directory / "model.json",
            {
                "kind": self.kind,
                "params": self.get_params(),
                "input_dims": self.input_dims_,
                "files": {"model.txt": sha256_bytes(text.encode())},
            },
        )

    @classmethod
    def load(cls, directory: str | Path) -> "LambdaMART":
        """Read a model written by :meth:`save`, checking ``model.txt`` against its recorded sha256.

        Args:
            directory: the run directory.

        Returns:
            The fitted model, ready to score.

        Raises:
            DataError: when ``model.json`` or ``model.txt`` is missing or unreadable, the manifest names
                another kind, or the checksum does not match.
        """
        import lightgbm as lgb

        directory = Path(directory)
        meta = read_manifest(directory, cls.kind)
        path = directory / "model.txt"
        try:
            text = path.read_text()
        except OSError as e:
            raise DataError(f"cannot read the LightGBM model: {e}", path=path, hint="point at a complete run directory") from e
        if sha256_bytes(text.encode()) != meta.get("files", {}).get("model.txt"):
            raise DataError("checksum mismatch: the model file changed after it was written", path=path, hint="retrain or restore the run directory")
        model = cls(**meta["params"])
        model.booster_ = lgb.Booster(model_str=text)
        model.input_dims_ = {k: int(v) for k, v in meta["input_dims"].items()}
        return model

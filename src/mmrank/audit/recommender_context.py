"""What a check of a *recommendation* audit may look at: the fitted recommenders, the
leave-one-out split in their dense ids, per-user test metrics (full ranking, seen items masked)
and the events with timestamps.

It offers the same names the shared checks read from a reranking ``AuditContext``
(``model_per_query``, ``baseline_per_query``, ``evaluable``, ``domains``, ``metric``,
``stats_options``, ``sampled_vs_full``, ``train_interactions``/``test_interactions``), so
``significance``, ``sample_size``, ``sampled_metric`` and ``temporal_leakage`` run unchanged, with
users in the place of queries.

``no_time_reason`` is set when the events carry no real timestamps (a data set's own split, a
random holdout, SASRec text): the runner then SKIPs the temporal checks with that reason instead
of comparing row numbers or positions as if they were times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from mmrank.audit.context import PolicyView
from mmrank.data.model import Interactions
from mmrank.errors import DataError
from mmrank.sequential.data import SequenceSplit


@dataclass
class RecommenderAuditContext(PolicyView):
    """The inputs of a recommendation audit (fitted recommenders, their leave-one-out splits,
    the events) with per-user test metrics computed lazily, once, under the names the shared
    checks read."""

    model: Any                                    # fitted sequential ranker (score_users)
    baseline: Any | None
    split: SequenceSplit                          # in the model's dense ids
    baseline_split: SequenceSplit | None          # in the baseline's dense ids (same users)
    policy: dict
    train_interactions: Interactions | None = None   # the events the model was trained on
    test_interactions: Interactions | None = None    # the events it is judged on
    sampled_negatives: int = 100
    extras: dict = field(default_factory=dict)
    recorded_events_missing: int = 0                 # recorded training events absent from the data
    provenance_hint: str | None = None               # what to provide when the training events are unknown
    headline: str = "full"   # what the runs report: full ranking (sampled metrics only beside it)
    no_time_reason: str | None = None                # why temporal checks cannot run (no timestamps)
    unit = "users"

    def evaluate(self, ranker: Any, split: SequenceSplit) -> dict[str, np.ndarray]:
        """Per-user test metrics (full ranking; ``sampled_*`` beside it when sampled_negatives > 0)."""
        from mmrank.sequential.evaluation import evaluate_stage

        return evaluate_stage(ranker, split, "test", sampled_negatives=self.sampled_negatives, seed=self.seed)

    @cached_property
    def model_metrics(self) -> dict[str, np.ndarray]:
        """The model's per-user test metrics (computed once), keyed by metric name, with
        ``"users"`` holding the evaluated users' dense ids."""
        return self.evaluate(self.model, self.split)

    @cached_property
    def baseline_metrics(self) -> dict[str, np.ndarray] | None:
        """The baseline's per-user test metrics (as :attr:`model_metrics`), or None without a baseline.

        Raises:
            DataError: the baseline's split evaluates other users (or in another order) than
                the model's."""
        if self.baseline is None:
            return None
        out = self.evaluate(self.baseline, self.baseline_split)
        model_users = self.split.users.ids[self.model_metrics["users"]]
        base_users = self.baseline_split.users.ids[out["users"]]
        if list(model_users) != list(base_users):
            raise DataError("the model and the baseline evaluate different users",
                            hint="audit a model and a baseline trained on the same data set")
        return out

    # -- the names the shared checks read -------------------------------------------------------
    @property
    def model_per_query(self) -> np.ndarray:
        """(U,) the audit metric (policy ``metric``) of the model for each evaluated user."""
        return self.model_metrics[self.metric]

    @property
    def baseline_per_query(self) -> np.ndarray | None:
        """(U,) the audit metric of the baseline for each evaluated user, or None without a baseline."""
        return None if self.baseline_metrics is None else self.baseline_metrics[self.metric]

    @property
    def evaluable(self) -> np.ndarray:
        """Every evaluated user has exactly one held-out item: all are evaluable."""
        return np.ones(len(self.model_metrics["users"]), dtype=bool)

    @property
    def domains(self) -> np.ndarray | None:
        """Always None: users carry no domain, so per-domain comparisons do not apply."""
        return None

    @property
    def sampled_vs_full(self) -> dict | None:
        """Per-user sampled and full-ranking values of the audit metric, for ``sampled_metric``."""
        key = f"sampled_{self.metric}"
        if key not in self.model_metrics:
            return None
        out = {"model": {"full": self.model_metrics[self.metric], "sampled": self.model_metrics[key]}}
        if self.baseline_metrics is not None:
            out["baseline"] = {"full": self.baseline_metrics[self.metric], "sampled": self.baseline_metrics[key]}
        return out

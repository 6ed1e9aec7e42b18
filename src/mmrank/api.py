"""The verbs a user needs first, re-exported by ``mmrank/__init__.py``:

``load_ranking`` · ``fit`` · ``load_run`` · ``evaluate`` · ``evaluate_run`` · ``run_audit``.

Each imports its machinery when called, so ``import mmrank`` stays light (no torch, no Lightning).
(``fit`` and ``run_audit``, not ``train`` and ``audit``: those names are subpackages, and importing
a subpackage rebinds its name on the package, which would silently replace the function.)

Example:
    >>> import mmrank
    >>> metrics = mmrank.fit("configs/mq2008_lambdamart.yaml", out="runs/lm")  # doctest: +SKIP
    >>> run = mmrank.load_run("runs/lm")                                        # doctest: +SKIP
    >>> test = mmrank.load_ranking("S5.txt")                                    # doctest: +SKIP
    >>> mmrank.evaluate(test, run.model.score(test), ["ndcg@10", "mrr"])        # doctest: +SKIP
    >>> mmrank.run_audit("runs/lm", "heuristic", train=train, test=test).verdict    # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence


def load_ranking(path: str | Path, format: str | None = None):
    """Read a ranking file (JSONL, Parquet, LibSVM/LETOR; format detected) into a ``RankingSet``.

    Every record is validated; a bad one raises ``DataError`` naming ``path:line``."""
    from mmrank.data.formats import load_ranking as _load

    return _load(path, format)


def fit(config: str | Path, out: str | Path, *, sets: Sequence[str] | None = None, resume: bool = False) -> dict:
    """Train the model a YAML config describes (either task) into the run directory ``out``.

    Args:
        config: a YAML config (``task: rerank`` or ``task: sequential``; see configs/).
        out: the run directory to write.
        sets: ``key.path=value`` overrides, as ``mmrank train --set``.
        resume: continue a killed run from its last checkpoint.

    Returns:
        The metrics written to ``out/metrics.json``.
    """
    from mmrank.config import load_config

    cfg = load_config(config, list(sets or []))
    if cfg.task == "sequential":
        from mmrank.sequential.run import train_sequential

        return train_sequential(cfg, out, resume)
    from mmrank.train.rerank_run import train_rerank

    return train_rerank(cfg, out, resume)


def load_run(run_dir: str | Path):
    """A finished run directory of either task: ``Run(path, kind, task, model, config, metrics)``."""
    from mmrank.runs import load_run as _load

    return _load(run_dir)


def evaluate(rset, scores, metrics: Sequence[str] = ("ndcg@10",), **conventions: Any) -> dict[str, float]:
    """Mean metrics of ``scores (N,)`` on a ``RankingSet`` (``ndcg@k``, ``map``, ``mrr``, ...).

    Example:
        >>> evaluate(test, model.score(test), ["ndcg@10", "mrr"])  # doctest: +SKIP
        {'ndcg@10': 0.78, 'mrr': 0.61}
    """
    from mmrank.metrics import evaluate as _evaluate

    return _evaluate(rset, scores, list(metrics), **conventions)


def evaluate_run(run_dir: str | Path, data: str | Path | None = None, **options: Any) -> dict:
    """Evaluate a run directory: a reranker on the ranking file ``data`` (options: ``baseline``,
    ``metrics``, ``out``, ``allow_trained_on``, ``convention``), a sequential run on its own (or
    another) data set (option ``allow_trained_on``). Data the run trained on is refused unless allowed."""
    from mmrank.models.registry import task_of
    from mmrank.runs import model_kind

    if task_of(model_kind(run_dir)) == "sequential":
        from mmrank.sequential.run import evaluate_sequential

        return evaluate_sequential(run_dir, data, allow_trained_on=options.get("allow_trained_on", False))
    from mmrank.train.rerank_run import evaluate_rerank

    return evaluate_rerank(run_dir, data, **options)


def run_audit(model: Any, baseline: Any = None, **data: Any):
    """Audit ``model`` against ``baseline`` (fitted models, run directories or registry kinds):
    an ``AuditReport`` with ``verdict`` (GO / PAUSE_AND_FIX / NO_GO), ``reasons`` and every
    check's result. Keyword arguments as ``mmrank.audit.audit`` (``train=``, ``test=``, ...)."""
    from mmrank.audit import audit as _audit

    return _audit(model, baseline, **data)

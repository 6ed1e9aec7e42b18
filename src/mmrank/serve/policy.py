"""From parsed queries to decisions under a rollout/shadow/fallback policy — shared by the batch
reranker and the HTTP service so both behave identically.

Order of the gates: outside the rollout → original order, the model is not called; otherwise
score the top-M (with MC dropout when an uncertainty threshold is set and the model can), and
let ``reorder.decide`` apply shadow mode and every fallback.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass

from mmrank.data.model import RankingSet
from mmrank.serve.layout import group_by_layout
from mmrank.serve.records import head
from mmrank.serve.reorder import OUTSIDE_ROLLOUT, TIMEOUT, Decision, ModelOutput, decide, n_scored, original_order
from mmrank.serve.rollout import in_rollout
from mmrank.serve.scoring import score_queries, supports_uncertainty


@dataclass(frozen=True)
class RerankPolicy:
    """How queries are reranked. ``top_m`` None → every candidate; ``timeout_ms`` None → wait
    for the model however long it takes (the batch path); ``mc_passes`` is used only with an
    ``uncertainty_threshold`` and a model that has ``score_with_uncertainty``."""

    top_m: int | None = None
    rollout_percent: float = 100.0
    shadow: bool = False
    timeout_ms: float | None = None
    uncertainty_threshold: float | None = None
    mc_passes: int = 10

    def passes_for(self, ranker) -> int:
        """The MC-dropout passes to run for ``ranker``: ``mc_passes`` when an
        ``uncertainty_threshold`` is set and the ranker has ``score_with_uncertainty``, else 0
        (plain scoring)."""
        wants = self.uncertainty_threshold is not None and self.mc_passes > 0
        return self.mc_passes if wants and supports_uncertainty(ranker) else 0

    def decide(self, n: int, output: ModelOutput) -> Decision:
        """The order to return for a query of ``n`` candidates given the model's ``output``
        for its top-M, under this policy's ``top_m``, ``shadow`` and ``uncertainty_threshold``
        (see ``mmrank.serve.reorder.decide``: a fault, bad scores or too much uncertainty give
        the original order)."""
        return decide(n, self.top_m, output, shadow=self.shadow, uncertainty_threshold=self.uncertainty_threshold)


def decide_many(ranker, queries: list[RankingSet], policy: RerankPolicy) -> list[Decision]:
    """Decisions for one-query sets (the batch path): queries of one input layout are scored in
    one call, each layout on its own, so a line the model cannot score never touches the others."""
    decisions: dict[int, Decision] = {}
    live = []
    for i, q in enumerate(queries):
        if in_rollout(str(q.query_ids[0]), policy.rollout_percent):
            live.append(i)
        else:
            decisions[i] = original_order(q.n_candidates, OUTSIDE_ROLLOUT)
    heads = [head(queries[i], n_scored(queries[i].n_candidates, policy.top_m)) for i in live]
    passes = policy.passes_for(ranker)
    for idx, rset in group_by_layout(heads):
        for k, out in zip(idx, score_queries(ranker, rset, passes)):
            i = live[k]
            decisions[i] = policy.decide(queries[i].n_candidates, out)
    return [decisions[i] for i in range(len(queries))]


async def decide_one(ranker, query: RankingSet, policy: RerankPolicy, executor: Executor) -> Decision:
    """The HTTP path: one query, the model run in ``executor`` under ``policy.timeout_ms``.

    A timed-out model call cannot be killed (it is a thread); it finishes in the background and
    its result is dropped, while the caller already has the original order."""
    n = query.n_candidates
    if not in_rollout(str(query.query_ids[0]), policy.rollout_percent):
        return original_order(n, OUTSIDE_ROLLOUT)
    top = head(query, n_scored(n, policy.top_m))
    loop = asyncio.get_running_loop()
    call = loop.run_in_executor(executor, score_queries, ranker, top, policy.passes_for(ranker))
    timeout = None if policy.timeout_ms is None else policy.timeout_ms / 1000.0
    try:
        (output,) = await asyncio.wait_for(call, timeout)
    except asyncio.TimeoutError:
        output = ModelOutput(fault=TIMEOUT, detail=f"model took longer than {policy.timeout_ms:g} ms")
    return policy.decide(n, output)

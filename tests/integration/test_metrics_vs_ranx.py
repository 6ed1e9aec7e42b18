"""mmrank.metrics against ranx and trec_eval (via ir_measures/pytrec_eval) on real MQ2008 data.

Runs: each LETOR feature column used as the score of all 784 queries (15,211 documents) — real
score distributions with many ties (several features are 0 for most documents).

Convention mapping (what makes the numbers comparable):

* Ties. mmrank breaks ties by candidate position (stable). ranx sorts with an unstable
  quicksort and trec_eval by docno, so the reference libraries get a tie-free copy of the run
  (``_tie_free``: same order of distinct values, tied documents ordered by position, earlier
  first). mmrank gets the raw feature, ties included (6 columns are constant), so this also
  checks that its tie-break equals "earlier position first".
* Gain. ranx ``ndcg`` and trec_eval ``ndcg_cut`` use the linear gain (Järvelin) -> mmrank
  ``gain="linear"``; ranx ``ndcg_burges`` uses 2^rel - 1 -> mmrank's default exponential gain.
* Queries without relevant documents: ranx and trec_eval give 0 -> ``no_relevant="zero"``.
* Precision@k divides by k and AP by all relevant documents in all three libraries.
"""

from __future__ import annotations

import numpy as np
import pytest

from mmrank.metrics import per_query_metrics

ranx = pytest.importorskip("ranx")
ir_measures = pytest.importorskip("ir_measures")

TOLERANCE = 1e-9
FEATURES = list(range(0, 46, 3))  # 16 of the 46 columns: every kind of LETOR feature family
# mmrank name -> ranx name
RANX_NAMES = {
    **{f"ndcg@{k}": f"ndcg_burges@{k}" for k in (1, 5, 10)},
    "map": "map", "map@10": "map@10", "mrr": "mrr", "mrr@5": "mrr@5",
    **{f"precision@{k}": f"precision@{k}" for k in (1, 5, 10)},
    **{f"recall@{k}": f"recall@{k}" for k in (1, 5, 10)},
    "hr@5": "hit_rate@5",
}
LINEAR_RANX_NAMES = {f"ndcg@{k}": f"ndcg@{k}" for k in (1, 5, 10)}


@pytest.fixture(scope="module")
def mq2008(data_dir):
    from mmrank.data.formats import load_ranking
    from mmrank.data.model import concat_ranking_sets

    folder = data_dir / "ltr" / "MQ2008"
    if not (folder / "S1.txt").is_file():
        pytest.skip(f"MQ2008 not found under {folder}")
    rset = concat_ranking_sets([load_ranking(folder / f"S{i}.txt", "libsvm") for i in range(1, 6)])
    assert (rset.n_queries, rset.n_candidates) == (784, 15211)
    return rset


@pytest.fixture(scope="module")
def qrels(mq2008):
    qrels = {}
    for q in mq2008:
        qrels[q.query_id] = {str(c): int(label) for c, label in zip(q.candidate_ids, q.labels)}
    return qrels


def _tie_free(rset, scores: np.ndarray) -> np.ndarray:
    """Integer scores with the same order of distinct values and ties ordered by position.

    ``dense value rank * (longest query + 1) - position``: exact in float32 too (trec_eval
    compares with less than double precision, so a tiny additive offset would be lost)."""
    position = np.arange(rset.n_candidates) - np.repeat(rset.offsets[:-1], rset.group_sizes)
    _, value_rank = np.unique(scores, return_inverse=True)
    tie_free = value_rank.astype(np.float64) * (rset.group_sizes.max() + 1) - position
    assert tie_free.max() < 2**24, "scores would not be exact in float32"
    return tie_free


def _run_dict(rset, scores: np.ndarray) -> dict:
    run = {}
    for i, q in enumerate(rset):
        a, b = rset.offsets[i], rset.offsets[i + 1]
        run[q.query_id] = {str(c): float(s) for c, s in zip(q.candidate_ids, scores[a:b])}
    return run


def _assert_close(ours: np.ndarray, theirs: np.ndarray, what: str) -> None:
    diff = np.abs(ours - theirs)
    worst = int(np.argmax(diff))
    assert diff.max() < TOLERANCE, f"{what}: max |diff| {diff.max():.3g} at query {worst}"


def test_per_query_metrics_equal_ranx_on_real_feature_runs(mq2008, qrels):
    ranx_qrels = ranx.Qrels(qrels)
    query_ids = list(mq2008.query_ids)
    compared = 0
    for col in FEATURES:
        scores = mq2008.features["letor"][:, col].astype(np.float64)
        run = ranx.Run(_run_dict(mq2008, _tie_free(mq2008, scores)))
        names = {**RANX_NAMES, **{f"lin_{k}": v for k, v in LINEAR_RANX_NAMES.items()}}
        ranx.evaluate(ranx_qrels, run, list(names.values()), return_mean=False)
        ours = per_query_metrics(mq2008.labels, scores, mq2008.offsets, RANX_NAMES, no_relevant="zero")
        ours_linear = per_query_metrics(mq2008.labels, scores, mq2008.offsets, LINEAR_RANX_NAMES,
                                        gain="linear", no_relevant="zero")
        ours.update({f"lin_{k}": v for k, v in ours_linear.items()})
        for name, ranx_name in names.items():
            theirs = np.array([run.scores[ranx_name][q] for q in query_ids])
            _assert_close(ours[name], theirs, f"feature {col + 1} {name} vs ranx {ranx_name}")
            compared += 1
    assert compared == len(FEATURES) * (len(RANX_NAMES) + len(LINEAR_RANX_NAMES))


def test_per_query_metrics_equal_trec_eval_on_real_feature_runs(mq2008, qrels):
    from ir_measures import AP, RR, P, R, nDCG

    measures = {
        "ndcg@1": nDCG @ 1, "ndcg@5": nDCG @ 5, "ndcg@10": nDCG @ 10, "map": AP, "mrr": RR,
        "precision@5": P @ 5, "precision@10": P @ 10, "recall@10": R @ 10,
    }
    provider = ir_measures.providers.registry["pytrec_eval"]
    if not provider.is_available():
        pytest.skip("pytrec_eval is not installed")
    query_index = {q: i for i, q in enumerate(mq2008.query_ids)}
    for col in (0, 4, 38):  # TF, BM25-ish and LMIR-ish families
        scores = mq2008.features["letor"][:, col].astype(np.float64)
        run = _run_dict(mq2008, _tie_free(mq2008, scores))
        ours = per_query_metrics(mq2008.labels, scores, mq2008.offsets, measures, gain="linear",
                                 no_relevant="zero")
        theirs = {name: np.full(mq2008.n_queries, np.nan) for name in measures}
        by_measure = {str(m): name for name, m in measures.items()}
        for row in provider.evaluator(list(measures.values()), qrels).iter_calc(run):
            theirs[by_measure[str(row.measure)]][query_index[row.query_id]] = row.value
        for name in measures:
            # trec_eval reports every query of the qrels; none may be missing
            assert not np.isnan(theirs[name]).any(), f"trec_eval left out queries for {name}"
            _assert_close(ours[name], theirs[name], f"feature {col + 1} {name} vs trec_eval")

"""First-stage retrieval on small generated data: index kinds, exclusions, candidate files,
recall and end-to-end nDCG (the ML-100K pipeline is tests/integration/test_retrieval_ml100k.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mmrank.cli import app
from mmrank.data.formats import load_ranking, write_ranking
from mmrank.data.ml100k_items import save_item_features
from mmrank.data.model import ItemFeatures
from mmrank.errors import DataError
from mmrank.retrieval import IndexSettings, build_index, load_index
from mmrank.retrieval.candidates import candidate_set, retrieve
from mmrank.retrieval.evaluate import end_to_end_ndcg, list_order_scores, overlap_at_k, recall_at_k
from mmrank.retrieval.vectors import history_vectors, item_vectors


def clustered(n: int = 3000, d: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(30, d))
    return (centres[rng.integers(0, 30, n)] + 0.3 * rng.normal(size=(n, d))).astype(np.float32)


@pytest.fixture(scope="module")
def vectors():
    return clustered()


def brute_force_top(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    return np.argsort(-(qn @ xn.T), axis=1, kind="stable")[:, :k]


def test_exact_index_matches_brute_force_and_ann_is_close(vectors):
    queries = vectors[:50] + 0.1
    truth = brute_force_top(vectors, queries, 20)
    ids = [f"i{n}" for n in range(len(vectors))]
    flat = build_index(vectors, ids, IndexSettings(kind="flat"))
    scores, rows = flat.search(queries, 20)
    assert overlap_at_k(rows, truth, 20).mean() == 1.0
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    for kind in ("hnsw", "ivf"):
        ann = build_index(vectors, ids, IndexSettings(kind=kind))
        assert ann.kind == kind
        assert overlap_at_k(ann.search(queries, 20)[1], truth, 20).mean() > 0.9
    assert build_index(vectors, ids).kind == "flat"  # auto: small galleries are searched exactly
    assert IndexSettings().resolved_kind(60_000) == "ivf"  # large ones by IVF (BENCHMARKS.md)


def test_index_saves_loads_and_refuses_a_changed_file(tmp_path, vectors):
    ids = [f"i{n}" for n in range(len(vectors))]
    for kind in ("flat", "hnsw", "ivf"):
        index = build_index(vectors, ids, IndexSettings(kind=kind, nprobe=3 if kind == "ivf" else None))
        index.save(tmp_path / kind)
        back = load_index(tmp_path / kind)
        assert back.kind == kind and back.settings == index.settings
        assert np.array_equal(back.search(vectors[:5], 10)[1], index.search(vectors[:5], 10)[1])
    blob = (tmp_path / "flat" / "index.faiss").read_bytes()
    (tmp_path / "flat" / "index.faiss").write_bytes(blob[:-4] + b"\0\0\0\0")
    with pytest.raises(DataError, match="checksum mismatch"):
        load_index(tmp_path / "flat")


def test_more_candidates_than_items_are_padded(vectors):
    index = build_index(vectors[:5], list("abcde"))
    scores, rows = index.search(vectors[:2], 8)
    assert rows.shape == (2, 8) and np.all(rows[:, 5:] == -1) and np.all(np.isneginf(scores[:, 5:]))


def test_retrieve_excludes_history_and_still_fills_k(vectors):
    index = build_index(vectors, [str(n) for n in range(len(vectors))])
    histories = [np.arange(0, 40), np.array([7]), np.zeros(0, dtype=np.int64)]
    found = retrieve(index, history_vectors(index.vectors, histories), 25, ["a", "b", "c"], exclude=histories)
    for rows, hist in zip(found.rows, histories):
        assert len(rows) == 25 and not set(rows) & set(hist.tolist())
    # The history query is the mean of its items: its best candidates come from the same cluster.
    same_cluster = brute_force_top(vectors, vectors[:40].mean(axis=0, keepdims=True), 200)[0]
    assert len(set(found.rows[0].tolist()) & set(same_cluster.tolist())) >= 20


def test_candidate_set_carries_first_stage_scores_labels_and_features(tmp_path, vectors):
    items = ItemFeatures(item_ids=[str(n) for n in range(len(vectors))], features={"emb": vectors, "meta": vectors[:, :3]})
    index = build_index(item_vectors(items, ["emb"]), items.item_ids)
    found = retrieve(index, vectors[:3], 10, ["q0", "q1", "q2"])
    target = str(found.rows[1][4])
    rset = candidate_set(index, found, targets=[{}, {target: 4.0, "missing": 5.0}, {}], items=items, modalities=["meta"])
    assert rset.n_candidates == 30 and set(rset.features) == {"first_stage", "meta"}
    assert np.allclose(rset.baseline_scores, np.concatenate(found.scores))
    assert np.allclose(rset.features["first_stage"][:, 0], rset.baseline_scores, atol=1e-6)
    assert rset.labels.sum() == 4.0 and rset.candidate_ids[14] == target
    assert np.allclose(rset.features["meta"], vectors[rset.candidate_ids.astype(int), :3])
    write_ranking(rset, tmp_path / "c.jsonl")
    back = load_ranking(tmp_path / "c.jsonl")
    assert np.allclose(back.baseline_scores, rset.baseline_scores)


def test_recall_and_end_to_end_ndcg_count_missed_targets():
    from mmrank.data.model import RankingSet

    rset = RankingSet(query_ids=["q"], offsets=[0, 3], candidate_ids=["a", "b", "c"], labels=[0, 1, 0])
    targets = [{"b": 1.0, "z": 1.0}]  # z was not retrieved
    assert recall_at_k(rset, targets)[0] == 0.5
    assert recall_at_k(rset, targets, k=1)[0] == 0.0
    scores = list_order_scores(rset)
    assert list(scores) == [0, -1, -2]
    # b at rank 2: DCG = 1/log2(3); ideal over BOTH targets = 1 + 1/log2(3).
    expected = (1 / np.log2(3)) / (1 + 1 / np.log2(3))
    assert end_to_end_ndcg(rset, scores, targets)[0] == pytest.approx(expected)
    assert end_to_end_ndcg(rset, scores, [{"b": 1.0}])[0] == pytest.approx(1 / np.log2(3))


def test_item_vectors_mean_weighted_cosines():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(50, 4)), rng.normal(size=(50, 6))
    items = ItemFeatures(item_ids=[str(i) for i in range(50)], features={"a": a, "b": b},
                         masks={"b": np.arange(50) != 3})
    v = item_vectors(items, ["a", "b"], [3, 1], center=False)
    cos = lambda x, i, j: x[i] @ x[j] / np.linalg.norm(x[i]) / np.linalg.norm(x[j])  # noqa: E731
    assert v[0] @ v[1] == pytest.approx(0.75 * cos(a, 0, 1) + 0.25 * cos(b, 0, 1), abs=1e-5)
    assert np.all(v[3, 4:] == 0)  # the masked row of b stays zero


def test_cli_builds_retrieves_and_evaluates(tmp_path, vectors):
    items = ItemFeatures(item_ids=[str(n) for n in range(len(vectors))], features={"text": vectors})
    save_item_features(items, tmp_path / "items", {})
    runner = CliRunner()
    res = runner.invoke(app, ["index", "build", "--items", str(tmp_path / "items"), "--modality", "text",
                              "--kind", "hnsw", "--out", str(tmp_path / "idx")])
    assert res.exit_code == 0 and "hnsw index over 3000 items" in res.output, res.output
    lines = [{"query_id": "u1", "history": ["0", "1", "2"], "targets": {"5": 2, "9": 1}},
             {"query_id": "u2", "embedding": vectors[10].tolist()}]
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    res = runner.invoke(app, ["retrieve", "--index", str(tmp_path / "idx"), "--queries", str(tmp_path / "q.jsonl"),
                              "--items", str(tmp_path / "items"), "--k", "30", "--out", str(tmp_path / "c.jsonl")])
    assert res.exit_code == 0, res.output
    assert "recall@30" in res.output
    rset = load_ranking(tmp_path / "c.jsonl")
    assert rset.n_queries == 2 and rset.group_sizes.tolist() == [30, 30]
    assert not {"0", "1", "2"} & set(rset.candidate_ids[:30].tolist())
    assert rset.candidate_ids[30] == "10"  # an embedding query finds its own item first
    res = runner.invoke(app, ["index", "evaluate", "--ranked", str(tmp_path / "c.jsonl"),
                              "--targets", str(tmp_path / "c.jsonl.targets.json")])
    assert res.exit_code == 0 and "nDCG@10 (all targets)" in res.output, res.output
    (tmp_path / "bad.jsonl").write_text('{"query_id": "u1", "history": ["0"]}\n{"query_id": "u2", "history": ["nope"]}\n')
    res = runner.invoke(app, ["retrieve", "--index", str(tmp_path / "idx"), "--queries", str(tmp_path / "bad.jsonl"),
                              "--out", str(tmp_path / "x.jsonl")])
    assert res.exit_code == 2 and "bad.jsonl:2: history item 'nope' is not in the index" in res.output
    assert not (tmp_path / "x.jsonl").exists()

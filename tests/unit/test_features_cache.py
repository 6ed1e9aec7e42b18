"""The content-addressed feature cache: keys, misses only, failures not cached, concurrent writers."""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from mmrank.features.cache import FeatureCache, cached_compute, cached_texts, content_key


def _fake_encoder(log: list):
    """A deterministic 'encoder': vector from the content's hash; records what it was asked."""
    def compute(todo):
        log.extend(todo)
        vecs, failures = [], {}
        for pos, c in enumerate(todo):
            if c == b"bad":
                vecs.append(None)
                failures[pos] = "cannot decode"
            else:
                seed = int(content_key(c)[:8], 16)
                vecs.append(np.random.default_rng(seed).normal(size=4).astype(np.float32))
        return vecs, failures
    return compute


def test_key_is_content_not_name_and_encoder_separates_folders(tmp_path):
    assert content_key("abc") == content_key(b"abc")
    assert content_key(b"abc") != content_key(b"abd")
    a = FeatureCache(tmp_path, "enc-a", "1")
    b = FeatureCache(tmp_path, "enc-b", "1")
    a2 = FeatureCache(tmp_path, "enc-a", "2")
    assert len({a.dir, b.dir, a2.dir}) == 3
    a.put(content_key("x"), np.ones(3))
    assert b.get(content_key("x")) is None and a2.get(content_key("x")) is None
    assert np.array_equal(a.get(content_key("x")), np.ones(3, dtype=np.float32))


def test_only_missing_keys_are_computed_and_duplicates_once(tmp_path):
    cache = FeatureCache(tmp_path, "fake", "1")
    log: list = []
    first = cached_compute([b"a", b"b", b"a", None], _fake_encoder(log), 4, cache, {3: "no file"})
    assert log == [b"a", b"b"]  # the repeated content is encoded once
    assert first.mask.tolist() == [True, True, True, False]
    assert first.problems == {3: ("missing", "no file")}
    assert (first.cache_hits, first.computed) == (0, 3)
    log.clear()
    second = cached_compute([b"b", b"c", b"a"], _fake_encoder(log), 4, cache)
    assert log == [b"c"]
    assert (second.cache_hits, second.computed) == (2, 1)
    assert np.array_equal(second.matrix[0], first.matrix[1])
    assert np.array_equal(second.matrix[2], first.matrix[0])


def test_failures_are_reported_and_not_cached(tmp_path):
    cache = FeatureCache(tmp_path, "fake", "1")
    log: list = []
    r = cached_compute([b"bad", b"ok"], _fake_encoder(log), 4, cache)
    assert r.problems == {0: ("failed", "cannot decode")}
    assert not r.mask[0] and np.all(r.matrix[0] == 0)
    log.clear()
    cached_compute([b"bad", b"ok"], _fake_encoder(log), 4, cache)
    assert log == [b"bad"]  # retried next time, the good one came from the cache


def test_a_damaged_cache_file_is_a_miss(tmp_path):
    cache = FeatureCache(tmp_path, "fake", "1")
    cached_compute([b"a"], _fake_encoder([]), 4, cache)
    cache.path(content_key(b"a")).write_bytes(b"half a file")
    log: list = []
    r = cached_compute([b"a"], _fake_encoder(log), 4, cache)
    assert log == [b"a"] and r.mask.all()


def test_cached_texts_marks_blank_texts_missing(tmp_path):
    r = cached_texts(["hello", "  ", None], lambda todo: np.ones((len(todo), 2)), 2, FeatureCache(tmp_path, "t"))
    assert r.mask.tolist() == [True, False, False]
    assert r.problems == {1: ("missing", "empty text"), 2: ("missing", "empty text")}


def _writer(root: str, start: int, n: int) -> None:
    cache = FeatureCache(root, "concurrent", "1")
    for i in range(start, start + n):
        key = content_key(f"item-{i}")
        cache.put(key, np.full(64, i, dtype=np.float32))


def test_two_processes_and_threads_writing_overlapping_keys_leave_only_complete_files(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), s, 150)) for s in (0, 50)]
    for p in procs:
        p.start()
    with ThreadPoolExecutor(max_workers=2) as pool:  # threads of this process join in
        list(pool.map(lambda s: _writer(str(tmp_path), s, 100), (100, 120)))
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    cache = FeatureCache(tmp_path, "concurrent", "1")
    for i in range(0, 220):
        vec = cache.get(content_key(f"item-{i}"))
        assert vec is not None and vec.shape == (64,) and np.all(vec == i)
    leftovers = [p for p in cache.dir.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []

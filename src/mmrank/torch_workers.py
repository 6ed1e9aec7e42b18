"""Independent chunks of torch work spread over worker threads that run torch single-threaded.

Chunked inference (queries of a reranker, users of a full-ranking evaluation) has no dependency
between chunks. Giving each of N threads its own chunk, one intra-op thread each, scales better
than N intra-op threads on every operation: small operations split N ways spend their time at
OpenMP barriers, and one barrier waits for the slowest thread — which, on a shared box, is the one
another process has just preempted. torch operations release the GIL, so the workers run in
parallel. ``torch.set_num_threads`` acts on the calling thread's OpenMP team, so setting 1 in
the workers leaves the caller's setting alone.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")

_POOLS: dict[int, ThreadPoolExecutor] = {}
_LOCK = threading.Lock()


def _forget_pools_after_fork() -> None:
    """A forked child has none of the parent's threads: a pool it inherited would take work and
    never run it. The child starts with no pools (and a fresh lock) and makes its own."""
    global _LOCK
    _POOLS.clear()
    _LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_pools_after_fork)


def single_thread_pool(workers: int) -> ThreadPoolExecutor:
    """The process-wide pool of ``workers`` threads, each running torch with one intra-op thread.

    Args:
        workers: number of threads (one pool per size, created on first use and kept).

    Returns:
        A ``ThreadPoolExecutor``.
    """
    with _LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            pool = _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="mmrank-torch",
                                                        initializer=torch.set_num_threads, initargs=(1,))
        return pool


def map_chunks(fn: Callable[[T], R], chunks: Iterable[T], workers: int | None = None) -> list[R]:
    """``[fn(c) for c in chunks]``, spread over ``workers`` single-threaded workers.

    Args:
        fn: work on one chunk; it must not depend on other chunks' results. Thread-local torch
            state (grad mode, inference mode) must be set inside ``fn``: workers start with torch's
            defaults.
        chunks: the chunks, any iterable.
        workers: threads to use; None = ``torch.get_num_threads()`` of the caller. With one worker
            or one chunk, ``fn`` runs in the calling thread (with the caller's intra-op threads).

    Returns:
        The results in chunk order. The first exception raised by ``fn`` is re-raised.

    Example:
        >>> map_chunks(lambda c: sum(c), [[1, 2], [3], [4, 5]], workers=2)
        [3, 3, 9]
    """
    chunks = list(chunks)
    workers = min(torch.get_num_threads() if workers is None else workers, len(chunks))
    if workers <= 1:
        return [fn(c) for c in chunks]
    return list(single_thread_pool(workers).map(fn, chunks))

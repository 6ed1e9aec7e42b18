"""Run independent retraining jobs in parallel: joblib processes (default) or Ray workers.

A job is ``fn(*args)`` with every random choice fixed by a seed inside ``args``; the engines
only decide *where* a job runs, never what it computes, so results are identical across
engines and worker counts (tested). Results come back in job order.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from mmrank.errors import ConfigError

ENGINES = ("joblib", "ray")


def run_jobs(
    fn: Callable[..., Any],
    jobs: Sequence[tuple],
    *,
    engine: str = "joblib",
    n_jobs: int = 2,
    address: str | None = None,
) -> list[Any]:
    """Run ``fn(*args)`` for every ``args`` in ``jobs`` on the chosen engine.

    Args:
        fn: a picklable function; every random choice must be seeded through its arguments.
        jobs: one argument tuple per job.
        engine: ``"joblib"`` (loky processes; in-process when ``n_jobs`` is 1 or there is one
            job) or ``"ray"``.
        n_jobs: parallel workers (Ray: CPUs of a local cluster started here).
        address: a running Ray cluster to join instead of starting one.

    Returns:
        The jobs' results, in job order.

    Raises:
        ConfigError: an unknown engine, or ``"ray"`` without the ray package installed."""
    if engine not in ENGINES:
        raise ConfigError(f"engine {engine!r} — use one of {ENGINES}")
    if not jobs:
        return []
    if engine == "ray":
        return _run_ray(fn, jobs, n_jobs, address)
    if n_jobs == 1 or len(jobs) == 1:
        return [fn(*args) for args in jobs]  # no process pool for one worker: same code path, no overhead
    from joblib import Parallel, delayed

    # One job per dispatch: jobs here last seconds to minutes, and batching two long ones onto one
    # worker would leave the other idle.
    return list(Parallel(n_jobs=n_jobs, backend="loky", batch_size=1)(delayed(fn)(*args) for args in jobs))


def _import_ray():
    try:
        import ray
    except ImportError as e:
        raise ConfigError(
            "engine 'ray' needs the ray package — install it with `pip install 'mmrank[ray]'` "
            "(or `pip install ray`), or use --engine joblib"
        ) from e
    return ray


def _start_ray(ray, n_jobs: int, address: str | None) -> bool:
    """Start (or join) Ray unless it runs already; True when this call started it."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True}
    if address:
        kwargs["address"] = address
    else:
        kwargs["num_cpus"] = int(n_jobs)
    ray.init(**kwargs)
    return True


@contextmanager
def engine_session(engine: str, n_jobs: int, address: str | None = None) -> Iterator[None]:
    """Keep the engine up for a whole audit: Ray is started once (its start-up costs seconds)
    and shut down at the end, however many pools run inside; joblib needs nothing."""
    if engine != "ray":
        yield
        return
    ray = _import_ray()
    started = _start_ray(ray, n_jobs, address)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def _run_ray(fn: Callable[..., Any], jobs: Sequence[tuple], n_jobs: int, address: str | None) -> list[Any]:
    ray = _import_ray()
    started_here = _start_ray(ray, n_jobs, address)
    try:
        remote = ray.remote(num_cpus=1)(fn)
        # Large shared inputs (the training set) are put in the object store once, not per job.
        shared: dict[int, Any] = {}
        def ref(x):
            if isinstance(x, (int, float, str, bool, type(None))):
                return x
            key = id(x)
            if key not in shared:
                shared[key] = ray.put(x)
            return shared[key]
        futures = [remote.remote(*[ref(a) for a in args]) for args in jobs]
        return list(ray.get(futures))
    finally:
        if started_here:
            ray.shutdown()


def timed_call(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """One pool job: ``(fn(*args), its own wall seconds)`` (top-level, so every engine can ship it)."""
    import time

    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def run_pool(tasks: Sequence[tuple[Callable[..., Any], tuple]], *, engine: str = "joblib", n_jobs: int = 2,
             address: str | None = None) -> list[tuple[Any, float]]:
    """Run different jobs — ``(fn, args)`` each: model fits, permuted retrains, probes — in ONE
    pool, so that every worker stays busy until the last job (a check's three retrains on two
    workers alone take two rounds; mixed with the fits and the other checks' jobs they fill the
    gaps). Put the longest jobs first: the pool hands them out in order.

    Returns:
        ``(result, seconds)`` per task, in task order."""
    return run_jobs(timed_call, [(fn, *args) for fn, args in tasks], engine=engine, n_jobs=n_jobs, address=address)

"""``mmrank serve --workers N``: N server processes on one port (uvicorn's multi-process mode).

uvicorn starts each worker in a fresh (spawned) process and builds its app from an import string,
so what ``mmrank serve`` parsed from its options reaches the workers as JSON in the environment
variable ``MMRANK_SERVE_WORKER`` (paths and numbers only: the token is read again from its file,
never put in the environment). Every worker loads its own copy of the model.

What differs from one process (docs/serving.md, "Several workers"):

* ``/metrics`` and ``/health`` answer from whichever worker took the connection: each has its own
  counters (``/health`` names the worker's ``pid``);
* ``/admin/reload`` is refused (409): it would swap the model in one worker only. Restart the
  server to change the model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

ENV = "MMRANK_SERVE_WORKER"


def worker_settings(model: Path, policy, *, token_file: Path | None, max_candidates: int, max_body_bytes: int,
                    models_root: Path | None, read_timeout_s: float, docs: bool, ab_log: Path | None,
                    workers: int, http: str = "auto", scoring_threads: int = 4) -> str:
    """The JSON that ``app_from_env`` builds each worker's app from."""
    return json.dumps({
        "model": str(Path(model).resolve()),
        "policy": {"top_m": policy.top_m, "rollout_percent": policy.rollout_percent, "shadow": policy.shadow,
                   "timeout_ms": policy.timeout_ms, "uncertainty_threshold": policy.uncertainty_threshold,
                   "mc_passes": policy.mc_passes},
        "token_file": None if token_file is None else str(Path(token_file).resolve()),
        "max_candidates": max_candidates, "max_body_bytes": max_body_bytes,
        "models_root": None if models_root is None else str(Path(models_root).resolve()),
        "read_timeout_s": read_timeout_s, "docs": docs,
        "ab_log": None if ab_log is None else str(Path(ab_log).resolve()), "workers": workers, "http": http,
        "scoring_threads": scoring_threads,
    })


def app_from_env():
    """The app of one worker process (uvicorn's ``factory``), from ``MMRANK_SERVE_WORKER``."""
    from mmrank.serve.app import ServeConfig, create_app
    from mmrank.serve.model_slot import ModelSlot, load_run
    from mmrank.serve.policy import RerankPolicy

    s = json.loads(os.environ[ENV])
    token = Path(s["token_file"]).read_text().strip() if s["token_file"] else None
    config = ServeConfig(
        policy=RerankPolicy(**s["policy"]), max_candidates=s["max_candidates"], max_body_bytes=s["max_body_bytes"],
        token=token, models_root=None if s["models_root"] is None else Path(s["models_root"]),
        read_timeout_s=s["read_timeout_s"], docs=s["docs"],
        ab_log=None if s["ab_log"] is None else Path(s["ab_log"]), workers=s["workers"],
        scoring_threads=s["scoring_threads"],
    )
    return create_app(ModelSlot(load_run(s["model"])), config)


def __getattr__(name: str):
    """``http_protocol``: the read-timeout HTTP protocol for the workers, by import string (a
    class made at run time cannot be sent to a spawned process; its name can)."""
    if name == "http_protocol":
        from mmrank.serve.slow_clients import read_timeout_protocol

        settings = json.loads(os.environ[ENV])
        return read_timeout_protocol(settings["read_timeout_s"], settings["http"])
    raise AttributeError(name)

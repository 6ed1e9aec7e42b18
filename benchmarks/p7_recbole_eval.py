"""P7 peer side: time RecBole 1.2.1's own full-sort evaluation of a saved SASRec checkpoint.

Runs in RecBole's venv (never the project's: RecBole needs numpy<2), on the checkpoint that
``run_sasrec.sh`` saves (copy it out of RecBole's working folder while it runs):

    THREADS=1 /tmp/recbole-venv/bin/python benchmarks/p7_recbole_eval.py SASRec-....pth [--repeats 3]

Prints JSON: seconds per evaluation of the test users (full sort over all items, history masked,
RecBole's metrics) and users/s. With ``--breakdown`` also where that time goes, each stage timed
alone on the same test batches (median of ``--repeats``): ``loader`` (iterating the test
DataLoader: collating each batch, history indices), ``forward`` (``model.full_sort_predict``: the
transformer over every position and the item-matrix product) with its FLOPs counted by
``torch.utils.flop_counter`` and a 1024^3 fp32 GEMM peak at the same thread count, and the rest
(masking, top-k, metric collection) as total minus the two.
"""

import json
import os
import statistics
import sys
import time

import numpy as np
import torch

# RecBole 1.2.1's NDCG uses np.float, an alias numpy 1.24+ removed; restore the alias (it was
# the builtin float) so the peer's own evaluation code runs unchanged.
if not hasattr(np, "float"):
    np.float = float  # type: ignore[attr-defined]

if os.environ.get("THREADS"):
    torch.set_num_threads(int(os.environ["THREADS"]))
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
from recbole.quick_start import load_data_and_model  # noqa: E402
from recbole.utils import get_trainer  # noqa: E402

path = sys.argv[1]
repeats = int(sys.argv[sys.argv.index("--repeats") + 1]) if "--repeats" in sys.argv else 3
config, model, dataset, train_data, valid_data, test_data = load_data_and_model(path)
trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
times, result = [], None
for _ in range(repeats):
    t0 = time.perf_counter()
    result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    times.append(time.perf_counter() - t0)
users = int(test_data.dataset.inter_num) if hasattr(test_data, "dataset") else None
out = {"peer": "recbole-sasrec-eval", "threads": torch.get_num_threads(), "users": users,
       "seconds": [round(t, 4) for t in times],
       "users_per_s": round(users / statistics.median(times), 1) if users else None,
       "test": {k: float(v) for k, v in result.items()}}


def median_of(fn) -> float:
    """Median seconds of ``repeats`` calls of ``fn`` (common.py is standard library only, so it
    loads in RecBole's venv too)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import median_seconds

    return median_seconds(fn, repeats)


if "--breakdown" in sys.argv:
    from torch.utils.flop_counter import FlopCounterMode

    batches = [b[0] for b in test_data]  # the interactions (item sequences), collated once
    model.eval()

    def forward() -> None:
        with torch.no_grad():
            for inter in batches:
                model.full_sort_predict(inter)

    with FlopCounterMode(display=False) as counter:
        forward()
    loader_s = median_of(lambda: [None for _ in test_data])
    forward_s = median_of(forward)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    peak = max(2 * 1024**3 / median_of(lambda: a @ b) / 1e9 for _ in range(3))
    total = statistics.median(times)
    out["breakdown"] = {"batches": len(batches), "max_len": int(batches[0][model.ITEM_SEQ].shape[1]),
                        "total_s": round(total, 4), "loader_s": round(loader_s, 4), "forward_s": round(forward_s, 4),
                        "rest_s": round(total - loader_s - forward_s, 4),
                        "forward_gflop": round(counter.get_total_flops() / 1e9, 3),
                        "forward_gflop_per_s": round(counter.get_total_flops() / forward_s / 1e9, 1),
                        "gemm_peak_gflop_per_s": round(peak, 1)}
print(json.dumps(out))

"""P7 peer side: time RecBole 1.2.1's own full-sort evaluation of a saved SASRec checkpoint.

Runs in RecBole's venv (never the project's: RecBole needs numpy<2), on the checkpoint that
``run_sasrec.sh`` saves (copy it out of RecBole's working folder while it runs):

    THREADS=1 /tmp/recbole-venv/bin/python benchmarks/p7_recbole_eval.py SASRec-....pth [--repeats 3]

Prints JSON: seconds per evaluation of the test users (full sort over all items, history masked,
RecBole's metrics) and users/s.
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
print(json.dumps({"peer": "recbole-sasrec-eval", "threads": torch.get_num_threads(), "users": users,
                  "seconds": [round(t, 4) for t in times],
                  "users_per_s": round(users / statistics.median(times), 1) if users else None,
                  "test": {k: float(v) for k, v in result.items()}}))

"""P7: full-ranking evaluation throughput (users/s) of trained sequential runs, next to RecBole's
own full-sort evaluation measured in the same run (its ``trainer.evaluate`` on a saved checkpoint,
in RecBole's venv, at the same thread count; rounds alternate ours / RecBole's), or read from a
RecBole log's "epoch N evaluating [time: S]" lines.

    python benchmarks/p7_eval_throughput.py RUN [RUN ...] --threads 1 \
        --recbole-ckpt SASRec-....pth [--recbole-python ~/.cache/recbole-venv/bin/python] [--rounds 2]

Ours is timed the same way: the test stage's full ranking of every user (scores for all items,
seen items masked, metrics), median of ``--repeats`` runs, with torch threads as given (chunks of
users go to one single-threaded worker per thread).

RecBole's side also reports where its time goes (``p7_recbole_eval.py --breakdown``: loader,
forward with its FLOPs, the rest), and each of our runs the ratio it would reach if its forward ran
at the GEMM peak and took all the time (``x_recbole_if_forward_at_gemm_peak``: the ceiling of the
ratio at this model's FLOPs).

Beside it, the roofline of the model's own forward: its FLOPs over all test users (counted by
``torch.utils.flop_counter``: matmuls and attention), the median time of that forward alone, the
GFLOP/s it reaches and an fp32 GEMM peak measured in the same run at the same thread count.

``--save-per-user DIR`` writes each run's per-user metrics (``<run name>.npz``); ``--compare-per-user
DIR`` checks them bit for bit against such files written by another code version (e.g. the commit
before an optimisation, run with its own ``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, gemm_peak, median_seconds, stamp  # noqa: E402
from seqrec_common import recbole_epochs  # noqa: E402


def forward_roofline(ranker, split, chunk_size: int, repeats: int) -> dict:
    """FLOPs, seconds and GFLOP/s of the next-item scoring forward over every test user, batched
    as the evaluation batches them (users in order of history length, ``chunk_size`` at a time)."""
    from torch.utils.flop_counter import FlopCounterMode

    hist = split.history_for("test")
    users = sorted((u for u in range(hist.n_users) if split.test_target[u] > 0), key=lambda u: len(hist.of(u)))
    batches = [[hist.of(u) for u in users[i:i + chunk_size]] for i in range(0, len(users), chunk_size)]

    def forward():
        with torch.inference_mode(), ranker.scoring_session():
            for seqs in batches:
                ranker.score_histories(seqs)

    with FlopCounterMode(display=False) as counter:
        forward()
    flops = counter.get_total_flops()
    seconds = median_seconds(forward, repeats, warmup=True)
    cap = ranker.params.max_len
    computed = sum(len(b) * min(cap, max(len(s) for s in b)) for b in batches)
    real = sum(min(len(hist.of(u)), cap) for u in users)
    return {"gflop": round(flops / 1e9, 3), "seconds": round(seconds, 4),
            "gflop_per_s": round(flops / seconds / 1e9, 1), "gemm_peak_gflop_per_s": round(gemm_peak(), 1),
            "positions_computed": int(computed), "positions_if_padded_to_max_len": len(users) * cap,
            "real_positions": int(real)}


def ort_encoder_probe(run: str, args, reference: dict) -> dict:
    """The lever that is left, measured and not adopted: the same evaluation with the transformer
    encoder (the inference path of ``SASRecNet._last_state_inference``: every layer, the last one for
    the last position only) run as an ONNX Runtime graph, whose GEMM (MLAS) is about twice torch's
    (MKL) on this AMD CPU. Returns its seconds and which per-user metrics differ from ``reference``
    (torch's): another summation order moves scores by ~1e-6, which can move a target's rank."""
    import io
    import warnings

    import onnxruntime as ort
    import torch.nn.functional as F

    from mmrank.sequential.evaluation import evaluate_stage
    from mmrank.sequential.run import load_run, load_sequence_data
    from mmrank.sequential.sasrec import SASRecNet

    ranker, config = load_run(run)
    split = load_sequence_data(config.data.path).split
    net = ranker.net_
    d, H = int(net.item_emb.embedding_dim), net.heads

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net  # a submodule: its weights export as the graph's initializers

        def forward(self, x, mask_add):  # x (B, L, d) input states, mask_add (B, 1, L, L) 0 / -inf
            B, L = x.shape[0], x.shape[1]
            layers = list(self.net.encoder.layers)
            for i, layer in enumerate(layers):
                w, b = layer.self_attn.in_proj_weight, layer.self_attn.in_proj_bias
                y = F.layer_norm(x, (d,), layer.norm1.weight, layer.norm1.bias, layer.norm1.eps)
                if i == len(layers) - 1:  # last layer: the last position's query only
                    q, kv, m, x = F.linear(y[:, -1:], w[:d], b[:d]), F.linear(y, w[d:], b[d:]), mask_add[:, :, -1:], x[:, -1:]
                    k, v = kv[..., :d], kv[..., d:]
                else:
                    qkv, m = F.linear(y, w, b), mask_add
                    q, k, v = qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:]
                split_heads = lambda z: z.reshape(B, z.shape[1], H, d // H).transpose(1, 2)  # noqa: E731
                att = torch.softmax(split_heads(q) @ split_heads(k).transpose(-1, -2) * (d // H) ** -0.5 + m, dim=-1)
                x = x + layer.self_attn.out_proj((att @ split_heads(v)).transpose(1, 2).reshape(B, q.shape[1], d))
                y = F.layer_norm(x, (d,), layer.norm2.weight, layer.norm2.bias, layer.norm2.eps)
                x = x + layer.linear2(F.gelu(layer.linear1(y)))
            fn = self.net.final_norm
            return F.layer_norm(x[:, -1], (d,), fn.weight, fn.bias, fn.eps)

    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(Encoder().eval(), (torch.zeros(2, 5, d), torch.zeros(2, 1, 5, 5)), buf, input_names=["x", "mask_add"],
                          output_names=["h"], dynamic_axes={"x": {0: "B", 1: "L"}, "mask_add": {0: "B", 2: "L", 3: "L2"}},
                          opset_version=17, dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1  # one per chunk worker, as torch's
    sess = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])

    def last_state(self, seq):  # _last_state_inference's inputs and masking, the encoder on ONNX Runtime
        L = seq.shape[1]
        x = self.input_embeddings(seq) * (self.item_emb.embedding_dim ** 0.5) + self.pos_emb.weight[self.max_len - L:][None]
        real = seq > 0
        t = torch.arange(L)
        allowed = ((t[None, :] <= t[:, None])[None] & real[:, None, :]) | torch.eye(L, dtype=torch.bool)[None]
        mask_add = torch.zeros(allowed.shape).masked_fill_(~allowed, float("-inf"))[:, None]
        h = sess.run(None, {"x": (x * real[..., None]).numpy(), "mask_add": mask_add.numpy()})[0]
        return torch.from_numpy(h) * real[:, -1:]

    original = SASRecNet._last_state_inference
    SASRecNet._last_state_inference = last_state
    try:
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            per_user = evaluate_stage(ranker, split, "test", chunk_size=args.chunk_size)
            times.append(time.perf_counter() - t0)
    finally:
        SASRecNet._last_state_inference = original
    differ = {k: int((per_user[k] != reference[k]).sum()) for k in reference if k != "users"}
    return {"median_s": round(statistics.median(times), 4), "users_per_s": round(len(per_user["users"]) / statistics.median(times), 1),
            "users_with_a_different_value": {k: v for k, v in differ.items() if v}}


def recbole_eval(args) -> dict:
    """One run of ``p7_recbole_eval.py`` in RecBole's venv on ``--recbole-ckpt`` (JSON it prints)."""
    script = Path(__file__).resolve().parent / "p7_recbole_eval.py"
    env = {**os.environ, "THREADS": str(args.threads), "OMP_NUM_THREADS": str(args.threads), "PYTHONWARNINGS": "ignore"}
    env.pop("PYTHONPATH", None)
    out = subprocess.run([os.path.expanduser(args.recbole_python), str(script), args.recbole_ckpt, "--repeats",
                          str(args.repeats), "--breakdown"], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def ours(run: str, args) -> tuple[dict, dict]:
    """Evaluation seconds of one run (``--repeats`` times) and its last per-user metrics."""
    from mmrank.sequential.evaluation import evaluate_stage
    from mmrank.sequential.run import load_run, load_sequence_data

    ranker, config = load_run(run)
    split = load_sequence_data(config.data.path).split
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        per_user = evaluate_stage(ranker, split, "test", chunk_size=args.chunk_size)
        times.append(time.perf_counter() - t0)
    users = len(per_user["users"])
    return {"users": users, "seconds": [round(t, 4) for t in times], "median_s": round(statistics.median(times), 4),
            "users_per_s": round(users / statistics.median(times), 1), "items": split.n_items,
            "forward": forward_roofline(ranker, split, args.chunk_size, args.repeats)}, per_user


def per_user_check(name: str, per_user: dict, args) -> bool | None:
    """Save ``per_user`` and/or compare it bit for bit with another code version's file."""
    if args.save_per_user:
        Path(args.save_per_user).mkdir(parents=True, exist_ok=True)
        np.savez(Path(args.save_per_user) / f"{name}.npz", **per_user)
    if not args.compare_per_user:
        return None
    other = np.load(Path(args.compare_per_user) / f"{name}.npz")
    return set(other.files) == set(per_user) and all(np.array_equal(other[k], per_user[k]) for k in per_user)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--recbole-log")
    ap.add_argument("--recbole-ckpt", help="a RecBole SASRec checkpoint (run_sasrec.sh saves one)")
    ap.add_argument("--recbole-python", default="~/.cache/recbole-venv/bin/python")
    ap.add_argument("--rounds", type=int, default=1, help="ours then RecBole's, this many times")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--chunk-size", type=int, default=64)
    ap.add_argument("--save-per-user", help="folder to write <run name>.npz per-user metrics into")
    ap.add_argument("--compare-per-user", help="folder of .npz files from another code version to compare with")
    ap.add_argument("--ort-encoder-probe", action="store_true",
                    help="also time the evaluation with the encoder on ONNX Runtime and say which per-user values move")
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = {"command": command_line(), "stamp": stamp(), "threads": args.threads,
           "gemm_peak_gflop_per_s_before": round(gemm_peak(), 1), "rounds": []}
    for _ in range(args.rounds):
        rnd = {}
        for run in args.runs:
            name = Path(run).name
            rnd[name], per_user = ours(run, args)
            rnd[name]["per_user_identical"] = per_user_check(name, per_user, args)
            if args.ort_encoder_probe:
                probe = rnd[name]["ort_encoder_probe"] = ort_encoder_probe(run, args, per_user)
                probe["x_ours"] = round(rnd[name]["median_s"] / probe["median_s"], 2)
        if args.recbole_ckpt:
            rnd["recbole"] = recbole_eval(args)
            for run in args.runs:
                r = rnd[Path(run).name]
                r["x_recbole"] = round(r["users_per_s"] / rnd["recbole"]["users_per_s"], 2)
                # the most this ratio could be if our forward ran at the fp32 GEMM peak and nothing
                # else took time: RecBole's seconds over (our forward's FLOPs / the peak)
                best_s = r["forward"]["gflop"] / r["forward"]["gemm_peak_gflop_per_s"]
                r["x_recbole_if_forward_at_gemm_peak"] = round(statistics.median(rnd["recbole"]["seconds"]) / best_s, 2)
                if "ort_encoder_probe" in r:
                    r["ort_encoder_probe"]["x_recbole"] = round(r["ort_encoder_probe"]["users_per_s"] / rnd["recbole"]["users_per_s"], 2)
        out["rounds"].append(rnd)
        print(json.dumps(rnd), flush=True)
    out["gemm_peak_gflop_per_s_after"] = round(gemm_peak(), 1)
    if args.recbole_log:
        rb = recbole_epochs(args.recbole_log)
        secs = [r["eval_seconds"] for r in rb]
        out["recbole_log"] = {"evals": len(secs), "seconds": secs, "median_s": statistics.median(secs)}
    print(json.dumps(out, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

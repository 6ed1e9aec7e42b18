"""P1 probe: the fused fp32 arithmetic in eager torch vs ``torch.compile`` (inductor, weight freezing,
static shapes) vs an ONNX Runtime export of the same function, on 100-candidate queries of the P1
speed model (64 queries, random weights), at ``T`` threads (env, default 2).

    python benchmarks/p1_engines_probe.py ort        # eager vs ONNX Runtime (2, 8, 64 queries per call)
    python benchmarks/p1_engines_probe.py compile    # eager vs torch.compile (2 and 64 queries per call)

Prints candidates/s (best / median of 5 passes over the 64 queries) and single-query latency
(median / p95 over 60 calls) per variant, and the torch fp32 1024^3 GEMM peak before and after.
A probe to choose an engine (the shipped one is ``mmrank.models.onnx_scoring``); not a P1 result.
"""
import os, sys, time, json
import numpy as np, torch, torch.nn.functional as F
from torch import nn
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from p1_throughput import make_set
from common import gemm_peak
from mmrank.models.cotrr import CoTRR

torch.set_num_threads(int(os.environ.get("T", "2")))
torch.manual_seed(0)
data = make_set(64)
model = CoTRR().prepare(data); model.network_.eval()
fs = model.fused_scorer("fp32", "torch")
X = np.ascontiguousarray(model.input_matrix(data), dtype=np.float32)
N, D = X.shape
Q, L = 64, 100

class Chunk(nn.Module):
    """The fused scorer's arithmetic on (B, L, D) equal-size queries (no padding)."""
    def __init__(s, fs):
        super().__init__()
        s.fs = fs
        s.slices = [ab for ab, _ in fs.token_proj]
        for i, (_, lin) in enumerate(fs.token_proj):
            s.register_buffer(f"tw{i}", lin.weight_t); s.register_buffer(f"tb{i}", lin.bias)
    def ln(s, x, n): return F.layer_norm(x, (int(n.weight.shape[0]),), n.weight, n.bias, n.eps)
    def mm(s, x, lin): return torch.addmm(lin.bias, x, lin.weight_t)
    def ffn(s, x, b): return x + s.mm(F.gelu(s.mm(s.ln(x, b.ffn_norm), b.ffn_in)), b.ffn_out)
    def forward(s, x):
        B, Lq, Din = x.shape
        n = B * Lq
        x = x.reshape(n, Din)
        T = len(s.slices)
        toks = torch.stack([torch.addmm(getattr(s, f"tb{i}"), x[:, a:b], getattr(s, f"tw{i}")) for i, (a, b) in enumerate(s.slices)], 1)
        d = toks.shape[-1]
        h = s.ln(toks, s.fs.token_norm).reshape(n * T, d)
        for blk in s.fs.blocks:
            H = blk.heads; hd = d // H
            qkv = s.mm(s.ln(h, blk.norm), blk.qkv).reshape(n, T, 3, H, hd)
            q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
            p = torch.softmax((q.unsqueeze(2) * k.unsqueeze(1)).sum(-1), dim=2)
            a = (p.unsqueeze(-1) * v.unsqueeze(1)).sum(2)
            h = h + s.mm(a.reshape(n * T, d), blk.out)
            h = s.ffn(h, blk)
        h = h.reshape(n, T, d)
        w = torch.softmax(h @ s.fs.pool_query, dim=-1)
        pooled = s.ln(torch.bmm(w.unsqueeze(1), h).squeeze(1), s.fs.pool_norm)
        blk = s.fs.context; H = blk.heads; hd = d // H
        qkv = s.mm(s.ln(pooled, blk.norm), blk.qkv)
        q, k, v = qkv.reshape(B, Lq, 3, H, hd).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, scale=1.0).permute(0, 2, 1, 3).reshape(n, d)
        pooled = pooled + s.mm(a, blk.out)
        pooled = s.ffn(pooled, blk)
        hidden = F.gelu(s.mm(pooled, s.fs.head_in))
        return (torch.addmm(s.fs.head_out.bias, hidden, s.fs.head_out.weight_t).reshape(n) * s.fs.inv_temperature)

m = Chunk(fs).eval()
xt = torch.from_numpy(X)
ref = fs.score(X, data.offsets)
with torch.inference_mode():
    out = m(xt.reshape(Q, L, D)).numpy()
print("module-vs-fused maxdiff", float(np.abs(out - ref).max()), flush=True)

def bench(name, fn, per_call_queries, reps=5):
    """candidates/s over the 64 queries in chunks of per_call_queries; single-query latency."""
    fn(2); fn(1)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for i in range(0, Q, per_call_queries):
            fn(per_call_queries, i)
        ts.append(time.perf_counter() - t0)
    lat = []
    for _ in range(3):
        for i in range(20):
            t0 = time.perf_counter(); fn(1, i); lat.append((time.perf_counter() - t0) * 1e3)
    r = {"cand_per_s": N / min(ts), "median_cps": N / float(np.median(ts)), "q_med_ms": float(np.median(lat)), "q_p95_ms": float(np.percentile(lat, 95))}
    print(name, json.dumps({k: round(v, 2) for k, v in r.items()}), flush=True)
    return r

res = {"peak_fp32_before": gemm_peak()}
print("peak", res["peak_fp32_before"], flush=True)
offs = data.offsets
def fused(nq, i=0):
    a, b = offs[i], offs[i + nq]
    return fs.score(X[a:b], offs[i:i + nq + 1] - a)
res["fused_eager"] = bench("fused-eager(score, workers)", lambda nq, i=0: fs.score(X, offs) if nq == Q else fused(nq, i), Q)
res["fused_chunk2"] = bench("fused-eager chunk=2q", fused, 2)
def eager_mod(nq, i=0):
    with torch.inference_mode():
        return m(xt[offs[i]:offs[i + nq]].reshape(nq, L, D))
res["eager_module_2q"] = bench("Chunk module eager 2q", eager_mod, 2)

what = sys.argv[1:] or ["ort", "compile"]
if "ort" in what:
    import onnxruntime as ort
    path = os.path.join(__import__("tempfile").mkdtemp(), "chunk.onnx")
    torch.onnx.export(m, (xt[:200].reshape(2, L, D),), path, input_names=["x"], output_names=["s"],
                      dynamic_axes={"x": {0: "B", 1: "L"}, "s": {0: "n"}}, opset_version=17, dynamo=False)
    so = ort.SessionOptions(); so.intra_op_num_threads = torch.get_num_threads(); so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    o = sess.run(None, {"x": X.reshape(Q, L, D)})[0]
    print("ort maxdiff", float(np.abs(o - ref).max()), flush=True)
    for nq in (2, 8, 64):
        res[f"ort_{nq}q"] = bench(f"ORT {nq}q/call", lambda k, i=0: sess.run(None, {"x": X[offs[i]:offs[i + k]].reshape(k, L, D)}), nq)
if "compile" in what:
    import torch._inductor.config as ic
    ic.freezing = True
    t0 = time.perf_counter()
    cm = torch.compile(m, dynamic=False)
    with torch.inference_mode():
        o = cm(xt[:200].reshape(2, L, D)); cm(xt[:100].reshape(1, L, D)); o64 = cm(xt.reshape(Q, L, D))
    print("compile s", time.perf_counter() - t0, "maxdiff", float(np.abs(o64.numpy() - ref).max()), flush=True)
    def comp(nq, i=0):
        with torch.inference_mode():
            return cm(xt[offs[i]:offs[i + nq]].reshape(nq, L, D))
    res["compile_2q"] = bench("compile 2q/call", comp, 2)
    res["compile_64q"] = bench("compile 64q/call", comp, 64)
res["peak_fp32_after"] = gemm_peak()
print(json.dumps(res))

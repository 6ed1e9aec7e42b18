"""P4 on the ML-100K multimodal reranking task: LambdaMART vs CoTRR vs V2 fusion (and the V1 heuristic).

Every run trains one model on the task's train split (early stopping on valid) and records its
validation nDCG@10 (the only number any choice is made on), its per-query test nDCG@10, its test
nDCG@10 with each modality replaced by its training mean (candidate and query side, as the audit's
modality ablation does), and, for the neural models, the attention share of each modality. Test
scores are kept as ``.npy`` files for the score-correlation criteria. Runs are appended to a JSON
file as they finish, so the plans below can run in separate (background, ``heavy``) processes and
be resumed; ``report`` turns the file into the BENCHMARKS section.

    python benchmarks/p4_ml100k_rerank.py run --plan tune-lambdamart --features /tmp/feat
    python benchmarks/p4_ml100k_rerank.py run --plan tune-cotrr --features /tmp/feat
    python benchmarks/p4_ml100k_rerank.py run --plan switches --features /tmp/feat
    python benchmarks/p4_ml100k_rerank.py run --plan main --features /tmp/feat
    python benchmarks/p4_ml100k_rerank.py run --plan modalities --features /tmp/feat
    python benchmarks/p4_ml100k_rerank.py audit --features /tmp/feat
    python benchmarks/p4_ml100k_rerank.py report

``--features`` is the folder written by ``mmrank data features --dataset ml100k`` (its
``items.safetensors`` and ``rerank/task.json``); the task is rebuilt in memory from the ratings and
the item features with the settings in ``task.json`` (seconds, instead of minutes of Parquet
reading) and checked to have the fingerprints ``task.json`` records, i.e. it is the same task.
Model settings start from the presets ``configs/ml100k_rerank_*.yaml``; plans override only what
they tune or ablate.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, RESULTS, command_line, stamp  # noqa: E402

RUNS_FILE = RESULTS / "p4_ml100k_runs.json"
PICKS_FILE = RESULTS / "p4_ml100k_picks.json"  # the choices the main plan froze (on validation)
MODALITIES = ("text", "image_effnet", "image", "meta", "pop")
MASKS = {**{m: (m,) for m in MODALITIES}, "images": ("image_effnet", "image")}  # test-time masking groups
SEEDS = (0, 1, 2)
SWITCHES = {  # the V2 roadmap switches, each at the preset's weight (models/fusion.py)
    "entropy": {"entropy_weight": 0.01},
    "modality_dropout": {"modality_dropout": 0.1},
    "reconstruction": {"reconstruction_weight": 0.1},
    "infonce": {"infonce_weight": 0.1, "infonce_pair": ["text", "image_effnet"]},
    "adversarial": {"adversarial_weight": 0.1},
}
# LambdaMART grid: (num_leaves, min_data_in_leaf, feature_fraction, learning_rate).
LAMBDAMART_GRID = [(31, 20, 1.0, 0.05), (31, 20, 0.3, 0.05), (7, 200, 0.3, 0.05),
                   (63, 20, 0.3, 0.05), (127, 50, 0.3, 0.05), (31, 20, 0.3, 0.02)]
SWITCHES_OFF = {"entropy_weight": 0.0, "modality_dropout": 0.0, "reconstruction_weight": 0.0,
                "infonce_weight": 0.0, "adversarial_weight": 0.0}


@dataclass
class Spec:
    """One training run: a preset, parameter / train-setting overrides, dropped modalities, a seed."""

    name: str
    preset: str                      # lambdamart | cotrr | fusion | heuristic
    params: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    drop: tuple = ()
    seed: int = 0
    cosines: bool = False            # add a `cos` modality: query-candidate cosine per item modality


def preset(name: str) -> dict:
    """The preset YAML ``configs/ml100k_rerank_<name>.yaml`` as a plain mapping (paths unexpanded)."""
    return yaml.safe_load((REPO / "configs" / f"ml100k_rerank_{name}.yaml").read_text())


def load_runs() -> dict:
    return json.loads(RUNS_FILE.read_text()) if RUNS_FILE.exists() else {}


def save_run(name: str, record: dict) -> None:
    runs = load_runs()  # re-read: another plan may have written meanwhile
    runs[name] = record
    RUNS_FILE.parent.mkdir(parents=True, exist_ok=True)
    tmp = RUNS_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(runs, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, RUNS_FILE)


# -- the task ---------------------------------------------------------------------------------------
def load_task(features: Path, data_dir: Path, folder: str = "rerank"):
    """The task's splits rebuilt in memory, checked against ``task.json``'s fingerprints."""
    from mmrank.data.io_recbole import read_recbole
    from mmrank.data.ml100k_items import load_item_features
    from mmrank.data.ml100k_rerank_task import RerankTaskConfig, build_rerank_task

    info = json.loads((features / folder / "task.json").read_text())
    items, _ = load_item_features(features)
    inter, _, _ = read_recbole(data_dir / "ml-100k")
    sets, built = build_rerank_task(inter, items, RerankTaskConfig(**info["config"]))
    for split, rset in sets.items():
        if rset.fingerprint() != info["counts"][split]["fingerprint"]:
            raise SystemExit(f"{features / folder}/task.json: the rebuilt {split} split differs from the written one — "
                             "rebuild the features with this code")
    return sets, built, inter


def without(rset, names):
    from mmrank.audit.modality_ablation import without as drop_one

    for m in names:
        rset = drop_one(rset, m)
    return rset


def with_cosines(rset):
    """``rset`` plus a ``cos`` modality: per candidate, the cosine between the query-side mean and
    the candidate's row of ``text``, ``image_effnet``, ``image`` and ``meta`` (what attention between
    query and candidate tokens can compute, and what trees on raw columns cannot)."""
    from dataclasses import replace

    cols = []
    for m in ("text", "image_effnet", "image", "meta"):
        if m in rset.features and m in rset.query_features:
            q, c = rset.query_features[m][rset.query_index].astype(np.float64), rset.features[m].astype(np.float64)
            norm = np.linalg.norm(q, axis=1) * np.linalg.norm(c, axis=1)
            cols.append(np.where(norm > 0, (q * c).sum(1) / np.where(norm > 0, norm, 1), 0.0))
    return replace(rset, features={**rset.features, "cos": np.stack(cols, axis=1).astype(np.float32)})


def masked(test, train, names):
    from mmrank.audit.modality_ablation import replaced_by_mean

    for m in names:
        if m in test.features:
            test = replaced_by_mean(test, train, m)
    return test


# -- one run ----------------------------------------------------------------------------------------
def build_and_fit(spec: Spec, train, valid):
    """Fit the run's model; returns (model, seconds, train settings used)."""
    from mmrank.config import TrainSettings
    from mmrank.models.registry import build_ranker

    cfg = preset(spec.preset)
    params = {**cfg["model"].get("params", {}), **spec.params}
    kind = cfg["model"]["kind"]
    if kind == "lambdamart":
        params["seed"] = spec.seed
    model = build_ranker(kind, params)
    t0 = time.perf_counter()
    settings = None
    if kind in ("cotrr", "fusion"):
        settings = TrainSettings(**{**cfg.get("train", {}), **spec.train, "seed": spec.seed, "progress": True})
        with tempfile.TemporaryDirectory() as logs:
            model.fit(train, valid, settings, log_dir=logs)
    else:
        model.fit(train, valid)
    return model, time.perf_counter() - t0, settings


def per_query(rset, scores) -> np.ndarray:
    from mmrank.metrics import evaluate_per_query

    return evaluate_per_query(rset, scores, ["ndcg@10"])["ndcg@10"].to_numpy()


def run_one(spec: Spec, sets, scores_dir: Path) -> dict:
    train, valid, test = (without(sets[s], spec.drop) for s in ("train", "valid", "test"))
    if spec.cosines:
        train, valid, test = with_cosines(train), with_cosines(valid), with_cosines(test)
    model, seconds, settings = build_and_fit(spec, train, valid)
    test_scores = model.score(test)
    record = {
        "spec": asdict(spec), "seconds": round(seconds, 1),
        "epochs": len(getattr(model, "history_", []) or []) or None, "best_epoch": getattr(model, "best_epoch_", None),
        "trees": getattr(getattr(model, "booster_", None), "best_iteration", None),
        "valid_ndcg@10": float(per_query(valid, model.score(valid)).mean()),
        "test_ndcg@10": float(per_query(test, test_scores).mean()),
        "test_per_query": [round(float(v), 6) for v in per_query(test, test_scores)],
        "masked_per_query": {}, "train_settings": None if settings is None else settings.model_dump(),
    }
    for group, names in MASKS.items():
        if any(m in test.features for m in names):
            record["masked_per_query"][group] = [round(float(v), 6) for v in per_query(test, model.score(masked(test, train, names)))]
    if hasattr(model, "attention_share"):
        record["attention_share"] = model.attention_share(test)
    scores_dir.mkdir(parents=True, exist_ok=True)
    np.save(scores_dir / f"{spec.name}.npy", test_scores.astype(np.float32))
    model.save(scores_dir / "models" / spec.name)  # the audit reloads the chosen model
    return record


# -- plans ------------------------------------------------------------------------------------------
def best(runs: dict, prefix: str) -> str:
    """The run name (seed 0) with the best validation nDCG@10 among names starting with ``prefix``."""
    found = {k: r["valid_ndcg@10"] for k, r in runs.items() if k.startswith(prefix) and r["spec"]["seed"] == 0
             and not r["spec"]["drop"] and not r["spec"].get("cosines")}
    if not found:
        raise SystemExit(f"no finished run starts with {prefix!r}: run the tuning plan first")
    return max(found, key=found.get)


def seeded(spec: Spec, seeds=SEEDS) -> list[Spec]:
    base = spec.name.rsplit(".s", 1)[0]
    return [Spec(f"{base}.s{s}", spec.preset, spec.params, spec.train, spec.drop, s) for s in seeds]


def spec_of(runs: dict, name: str) -> Spec:
    d = runs[name]["spec"]
    return Spec(d["name"], d["preset"], d["params"], d["train"], tuple(d["drop"]), d["seed"], d.get("cosines", False))


def plan(name: str, runs: dict) -> list[Spec]:
    """The runs of a plan (later plans read the choices earlier plans made on validation)."""
    if name == "tune-lambdamart":
        # 3,400 input columns, ~30k training rows. The first pass (the preset, column subsampling,
        # simpler trees) early-stopped after 22-143 trees and simpler trees were worse, so the grid
        # was extended towards more capacity and a slower learning rate; every point is judged on
        # validation only.
        return [Spec(f"lambdamart.l{l}.m{m}.f{f}" + (f".lr{lr}" if lr != 0.05 else "") + ".s0", "lambdamart",
                     {"num_leaves": l, "min_data_in_leaf": m, "feature_fraction": f, "learning_rate": lr,
                      "n_estimators": 500 if lr >= 0.05 else 1500})
                for l, m, f, lr in LAMBDAMART_GRID]
    if name == "tune-cotrr":
        return [Spec("cotrr.base.s0", "cotrr"), Spec("cotrr.lr3e-4.s0", "cotrr", train={"lr": 3e-4}),
                Spec("cotrr.drop0.3.s0", "cotrr", {"dropout": 0.3})]
    if name == "switches":
        # V2 = CoTRR's chosen settings, four token layers, each roadmap switch alone, all of the
        # preset's switches together; seed 0 chooses on validation, the base and the choice get 3 seeds.
        # The LambdaMART grid points added after the first tuning pass run first (finished ones are skipped).
        cot = spec_of(runs, best(runs, "cotrr."))
        specs = plan("tune-lambdamart", runs) + [Spec("fusion.off.s0", "fusion", {**cot.params, **SWITCHES_OFF}, cot.train)]
        specs += [Spec(f"fusion.{k}.s0", "fusion", {**cot.params, **SWITCHES_OFF, **v}, cot.train) for k, v in SWITCHES.items()]
        specs.append(Spec("fusion.preset.s0", "fusion", cot.params, cot.train))
        return specs
    if name == "main":
        # The choices are frozen here (PICKS_FILE): runs finished later (e.g. switches run after this
        # plan for lack of time) appear in the ablation table but can no longer change what is "best".
        picks = picks_of(runs)
        specs = [s for p in ("lambdamart", "cotrr", "fusion") for s in seeded(spec_of(runs, picks[p]))]
        return specs + [Spec("heuristic.s0", "heuristic")]
    if name == "main-off-seeds":
        return [Spec("fusion.off.s1", *_tail(runs, "fusion.off.s0", 1)), Spec("fusion.off.s2", *_tail(runs, "fusion.off.s0", 2))]
    if name in ("modalities", "modalities-core", "modalities-rest"):
        # core: LambdaMART given the query-candidate cosines (is the neural gain the similarity trees
        # cannot compute from raw columns?); rest: LambdaMART without each modality, then the best
        # multimodal model without each image modality (handcrafted vs pretrained), then without text,
        # meta, pop. `modalities` = both. (Split so that the audit can run in between when time is short.)
        top, lm = spec_of(runs, best_multimodal(runs)), spec_of(runs, picks_of(runs)["lambdamart"])
        neural = lambda m: Spec(f"{top.name.rsplit('.s', 1)[0]}.-{m}.s0", top.preset, top.params, top.train, (m,), 0)  # noqa: E731
        core = [Spec(f"{lm.name.rsplit('.s', 1)[0]}.+cos.s0", lm.preset, lm.params, lm.train, (), 0, True)]
        rest = [Spec(f"{lm.name.rsplit('.s', 1)[0]}.-{m}.s0", lm.preset, lm.params, lm.train, (m,), 0) for m in MODALITIES]
        rest += [neural(m) for m in ("image_effnet", "image", "text", "meta", "pop")]
        return {"modalities": core + rest, "modalities-core": core, "modalities-rest": rest}[name]
    raise SystemExit(f"unknown plan {name!r}")


def _tail(runs: dict, name: str, seed: int) -> tuple:
    s = spec_of(runs, name)
    return s.preset, s.params, s.train, s.drop, seed


def cmd_run(args) -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    sets, _, _ = load_task(Path(args.features), Path(args.data_dir))
    scores_dir = Path(args.scores)
    for spec in plan(args.plan, load_runs()):
        if spec.name in load_runs():
            print(f"{spec.name}: done earlier", flush=True)
            continue
        print(f"{spec.name}: training ({spec.preset}, params {spec.params}, train {spec.train}, drop {list(spec.drop)})", flush=True)
        record = run_one(spec, sets, scores_dir)
        save_run(spec.name, record)
        print(f"{spec.name}: valid {record['valid_ndcg@10']:.4f} test {record['test_ndcg@10']:.4f} "
              f"({record['seconds']:.0f} s, epochs {record['epochs']}, trees {record['trees']})", flush=True)


# -- audit ------------------------------------------------------------------------------------------
AUDIT_FILE = RESULTS / "p4_ml100k_audit.json"


def picks_of(runs: dict) -> dict:
    """The seed-0 run chosen on validation for each model kind: frozen in PICKS_FILE by the first
    call (the main plan), read back afterwards, so later runs cannot move the choice."""
    if PICKS_FILE.is_file():
        return json.loads(PICKS_FILE.read_text())
    picks = {p: best(runs, f"{p}.") for p in ("lambdamart", "cotrr", "fusion")}
    picks["candidates"] = sorted(k for k, r in runs.items() if r["spec"]["seed"] == 0 and not r["spec"]["drop"]
                                 and not r["spec"].get("cosines"))
    picks["frozen_at"] = stamp()
    PICKS_FILE.write_text(json.dumps(picks, indent=1) + "\n")
    return picks


def best_multimodal(runs: dict) -> str:
    """Of the chosen CoTRR and the chosen V2 (seed-0 names), the one with the better validation
    nDCG@10 averaged over the seeds it has (all three once the main plan ran)."""
    def valid(name: str) -> float:
        return float(np.mean([runs[n]["valid_ndcg@10"] for n in _seed_names(runs, name)]))

    picks = picks_of(runs)
    return max((picks["cotrr"], picks["fusion"]), key=valid)


def cmd_audit(args) -> None:
    """The audit of the best multimodal model (chosen on validation) against the tuned LambdaMART,
    with the task's seen / held-out events, so that temporal_leakage runs."""
    import torch

    from mmrank.audit import audit
    from mmrank.config import TrainSettings
    from mmrank.data.ml100k_task_checks import task_events
    from mmrank.models.registry import model_class

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    runs = load_runs()
    name, base = best_multimodal(runs), picks_of(runs)["lambdamart"]
    sets, info, inter = load_task(Path(args.features), Path(args.data_dir))
    seen, held_out = task_events(info, inter)
    models = Path(args.scores) / "models"
    model = model_class(runs[name]["spec"]["preset"]).load(models / name)  # presets are named after their kind
    baseline = model_class("lambdamart").load(models / base)
    settings = TrainSettings(**{**runs[name]["train_settings"], "progress": False})
    t0 = time.perf_counter()
    report = audit(model, baseline, train=sets["train"], valid=sets["valid"], test=sets["test"],
                   fit_options={"settings": settings}, train_interactions=seen, test_interactions=held_out,
                   n_jobs=1, progress=lambda check: print(f"check {check}", flush=True))
    report.meta.update({"model_run": name, "baseline_run": base, "audit_seconds": round(time.perf_counter() - t0, 1)})
    report.save(AUDIT_FILE)
    print(f"{name} vs {base}: {report.verdict}", flush=True)
    for r in report.reasons:
        print("  -", r, flush=True)


# -- report -----------------------------------------------------------------------------------------
def _pq(runs: dict, name: str) -> np.ndarray:
    return np.asarray(runs[name]["test_per_query"], dtype=float)


def _seed_names(runs: dict, name: str) -> list[str]:
    base = name.rsplit(".s", 1)[0]
    return [f"{base}.s{s}" for s in SEEDS if f"{base}.s{s}" in runs]


def _mean_pq(runs: dict, name: str, key: str | None = None) -> np.ndarray:
    """Per-query test nDCG@10 averaged over the seeds of ``name`` (masked by group ``key``)."""
    rows = [np.asarray(runs[n]["masked_per_query"][key] if key else runs[n]["test_per_query"], float)
            for n in _seed_names(runs, name)]
    return np.mean(rows, axis=0)


def _compare(a: np.ndarray, b: np.ndarray) -> dict:
    from mmrank.stats import paired_bootstrap_ci, randomization_test

    keep = ~(np.isnan(a) | np.isnan(b))
    ci = paired_bootstrap_ci(a[keep], b[keep], seed=0)
    return {"delta": float(np.mean(a[keep] - b[keep])), "low": ci.low, "high": ci.high,
            "p": randomization_test(a[keep], b[keep], seed=0).pvalue, "n": int(keep.sum())}


def _fmt_cmp(c: dict) -> str:
    return f"{c['delta']:+.4f} [{c['low']:+.4f}, {c['high']:+.4f}] p={c['p']:.3g}"


SPEARMAN_FILE = RESULTS / "p4_ml100k_spearman.json"  # correlations measured while the score files existed


def _spearman(scores_dir: Path, a: str, b: str, offsets: np.ndarray) -> float | None:
    """Mean within-query Spearman correlation of two runs' test scores (queries with ties only skipped).

    Test scores live in a scratch folder (``--scores``, 300 kB a run, not kept in the repo); every
    correlation measured is recorded in SPEARMAN_FILE, so a report written after the scratch folder
    is gone (a new machine) repeats the measured value instead of dropping it. None: never measured."""
    from scipy.stats import spearmanr

    fa, fb = scores_dir / f"{a}.npy", scores_dir / f"{b}.npy"
    known = json.loads(SPEARMAN_FILE.read_text()) if SPEARMAN_FILE.is_file() else {}
    if not (fa.is_file() and fb.is_file()):
        return known.get(f"{a} | {b}")
    x, y = np.load(fa), np.load(fb)
    vals = []
    for i in range(len(offsets) - 1):
        u, v = x[offsets[i]:offsets[i + 1]], y[offsets[i]:offsets[i + 1]]
        if np.ptp(u) > 0 and np.ptp(v) > 0:
            vals.append(spearmanr(u, v).statistic)
    rho = float(np.mean(vals)) if vals else None
    if rho is not None:
        known[f"{a} | {b}"] = round(rho, 6)
        SPEARMAN_FILE.write_text(json.dumps(dict(sorted(known.items())), indent=1) + "\n")
    return rho


def _grouped_share(share: dict) -> dict:
    out: dict = {}
    for k, v in share.items():
        key = k.split(".", 1)[1] if k.startswith("query.") else k
        out[key] = out.get(key, 0.0) + v
    return out


def _met(ok: bool | None) -> str:
    return "**not measured**" if ok is None else "**met**" if ok else "**not met**"


def _all_below(values: list, limit: float) -> bool | None:
    """Every value below ``limit``; None when any was not measured (its run is missing)."""
    return None if any(v is None for v in values) else all(v < limit for v in values)


def cmd_report(args) -> None:
    runs = load_runs()
    info = json.loads((Path(args.features) / "rerank" / "task.json").read_text())
    n_test = info["counts"]["test"]["queries"]
    scores_dir = Path(args.scores)
    picks = picks_of(runs)
    lm, cot, fus = picks["lambdamart"], picks["cotrr"], picks["fusion"]
    top = best_multimodal(runs)
    lm_pq = _mean_pq(runs, lm)
    L = ["## P4 on the ML-100K multimodal reranking task: LambdaMART vs CoTRR vs V2 fusion (issue 13)", ""]
    L += [f"Commands (each through `heavy`, one CPU thread; {stamp()}):", "",
          "    mmrank data features --dataset ml100k --data-dir ../shared/data --out FEAT",
          *[f"    python benchmarks/p4_ml100k_rerank.py run --plan {p} --features FEAT"
            for p in ("tune-lambdamart", "tune-cotrr", "switches", "main", "modalities")],
          "    python benchmarks/p4_ml100k_rerank.py audit --features FEAT",
          "    python benchmarks/p4_ml100k_rerank.py report --features FEAT", "",
          f"Task: `FEAT/rerank`, per-user time cuts (docs/ml100k_tasks.md): {info['counts']['train']['queries']} / "
          f"{info['counts']['valid']['queries']} / {n_test} train / valid / test queries, about 31 candidates each "
          "(the user's next rated movies, label = rating 1–5, and 20 never-rated movies drawn by popularity, label 0). "
          "Metric: test nDCG@10, exponential gain, the default convention. Every choice below (hyper-parameters, "
          "V2 switches, the 'best' model) was made on **validation** nDCG@10 only; test numbers were read after. "
          "Paired comparisons are over the test queries (BCa bootstrap CI95 of the mean difference, 10,000 resamples; "
          "randomization test p), on per-query nDCG@10 averaged over the 3 training seeds of each model. "
          "These are quality numbers, not timings: they were measured on the shared, loaded box (the seconds are "
          "wall times under that load).", ""]

    # tuning
    L += ["### Tuning on validation (seed 0)", "",
          f"Choices frozen by the main plan ({picks.get('frozen_at', '?')}) among the runs then finished; test "
          "numbers of the runs not chosen are not reported (the V2 switch ablation below is a measurement, not a choice).", "",
          "| run | valid nDCG@10 | trees / epochs | seconds |", "|---|---|---|---|"]
    for prefix in ("lambdamart.", "cotrr.", "fusion."):
        for k in sorted(k for k, r in runs.items() if k.startswith(prefix) and r["spec"]["seed"] == 0
                        and not r["spec"]["drop"] and not r["spec"].get("cosines")):
            r = runs[k]
            mark = " ← chosen" if k in (lm, cot, fus) else ""
            if k not in picks.get("candidates", [k]):
                mark += " (finished after the choice)"
            L.append(f"| {k}{mark} | {r['valid_ndcg@10']:.4f} | "
                     f"{r['trees'] if r['trees'] is not None else r['epochs']} | {r['seconds']:.0f} |")
    L.append("")

    # seeds x models
    rows = [("LambdaMART", lm), ("CoTRR", cot), ("V2 fusion (switches chosen on valid)", fus)]
    if "fusion.off.s0" in runs and fus != "fusion.off.s0":
        rows.append(("V2 fusion, all switches off", "fusion.off.s0"))
    L += ["### Seeds × models (test nDCG@10)", "",
          "| model | seed 0 | seed 1 | seed 2 | mean ± sd | valid mean | Δ vs LambdaMART (seed-averaged per query) [CI95] p |",
          "|---|---|---|---|---|---|---|"]
    summary: dict = {}
    for label, name in rows:
        seeds = _seed_names(runs, name)
        vals = [runs[n]["test_ndcg@10"] for n in seeds]
        cells = [f"{runs[n]['test_ndcg@10']:.4f}" if n in runs else "—" for n in (f"{name.rsplit('.s', 1)[0]}.s{s}" for s in SEEDS)]
        cmp = _compare(_mean_pq(runs, name), lm_pq) if name != lm else None
        summary[label] = cmp
        L.append(f"| {label} | {' | '.join(cells)} | {np.mean(vals):.4f} ± {np.std(vals, ddof=1) if len(vals) > 1 else 0:.4f} | "
                 f"{np.mean([runs[n]['valid_ndcg@10'] for n in seeds]):.4f} | {'—' if cmp is None else _fmt_cmp(cmp)} |")
    if "heuristic.s0" in runs:
        h = runs["heuristic.s0"]
        L.append(f"| V1 heuristic (text cosine, no training) | {h['test_ndcg@10']:.4f} | | | | {h['valid_ndcg@10']:.4f} | "
                 f"{_fmt_cmp(_compare(_pq(runs, 'heuristic.s0'), lm_pq))} |")
    if fus != "fusion.off.s0" and len(_seed_names(runs, "fusion.off.s0")) > 1:
        # the switch ablation below is seed 0 only; with the off variant at several seeds, the chosen
        # switches' effect can be told apart from seed noise
        c = _compare(_mean_pq(runs, fus), _mean_pq(runs, "fusion.off.s0"))
        L.append("")
        L.append(f"V2 with the chosen switches vs V2 with all switches off, both seed-averaged "
                 f"({len(_seed_names(runs, 'fusion.off.s0'))} seeds): {_fmt_cmp(c)}.")
    lm_seeds = [runs[n]["test_ndcg@10"] for n in _seed_names(runs, lm)]
    if len(lm_seeds) > 1 and np.ptp(lm_seeds) == 0:
        L.append("LambdaMART's seeds give the same model: with `feature_fraction` 1.0 and no bagging LightGBM draws no random numbers.")
    L.append("")
    goal = summary.get("V2 fusion (switches chosen on valid)") if top.startswith("fusion.") else summary.get("CoTRR")
    L.append(f"Best multimodal model on validation: `{top}`. **P4 goal (its CI95 lower bound above LambdaMART): "
             f"{'met' if goal and goal['low'] > 0 else 'not met'}** ({_fmt_cmp(goal) if goal else 'n/a'}).")
    late = best(runs, "fusion.")
    if late != fus:  # a V2 variant finished after the freeze beats the chosen one on validation: say what it gives
        c = _compare(_pq(runs, late), lm_pq)
        L.append(f"Runs finished after the choice would have moved it: among all V2 variants now finished, validation "
                 f"picks `{late}` (valid {runs[late]['valid_ndcg@10']:.4f} vs {runs[fus]['valid_ndcg@10']:.4f}); its test "
                 f"nDCG@10 is {runs[late]['test_ndcg@10']:.4f} (seed 0 only), Δ vs LambdaMART (seed-averaged) "
                 f"{_fmt_cmp(c)}: the P4 goal would be {'met' if c['low'] > 0 else 'not met'} with that choice too.")
    if goal:
        from mmrank.stats import paired_power, required_sample_size

        d = _mean_pq(runs, top) - lm_pq
        d = d[~np.isnan(d)]
        need = required_sample_size(float(d.mean()), float(d.std(ddof=1)))
        L.append(f"Power of this comparison: per-query differences have sd {d.std(ddof=1):.4f}; at the observed "
                 f"Δ {d.mean():+.4f}, {len(d)} test queries give {paired_power(float(d.mean()), float(d.std(ddof=1)), len(d)):.0%} "
                 f"power (paired t, α 0.05); 80% would need {need if np.isfinite(need) else '∞'} queries.")
    L.append("")
    (RESULTS / "p4_ml100k_summary.json").write_text(json.dumps({"best": top, "lambdamart": lm, "cotrr": cot, "fusion": fus,
                                                                "vs_lambdamart": summary}, indent=1) + "\n")
    L += modality_section(runs, top, lm)
    L += criteria_section(runs, scores_dir, args, cot, fus, lm)
    L += switches_section(runs, fus)
    L += audit_section()
    L += missing_section(runs)
    out = RESULTS / "p4_ml100k.md"
    out.write_text("\n".join(L).rstrip() + "\n")
    import common

    common.assemble()
    print(out.read_text())


def modality_section(runs: dict, top: str, lm: str) -> list[str]:
    L = ["### What each modality contributes", "",
         f"For the best multimodal model (`{top.rsplit('.s', 1)[0]}`) and for LambdaMART: Δ = nDCG@10 of the full model "
         "minus the model **retrained without** the modality (candidate and query side; seed 0 both), and, for the neural "
         "model, minus the full model with the modality **masked at test time** (replaced by its training mean, candidate "
         "and query side; seed-averaged). Positive = the modality helps.", "",
         "| modality | neural: retrained without, Δ [CI95] p | neural: masked at test, Δ [CI95] p | LambdaMART: retrained without, Δ [CI95] p |",
         "|---|---|---|---|"]
    tb, lb = top.rsplit(".s", 1)[0], lm.rsplit(".s", 1)[0]
    for m in MODALITIES:
        cells = []
        for base, full in ((tb, top), (None, None), (lb, lm)):
            if base is None:
                cells.append(_fmt_cmp(_compare(_mean_pq(runs, top), _mean_pq(runs, top, m))))
                continue
            name = f"{base}.-{m}.s0"
            cells.append(_fmt_cmp(_compare(_pq(runs, full), _pq(runs, name))) if name in runs else "not run")
        L.append(f"| {m} | {' | '.join(cells)} |")
    cos = f"{lb}.+cos.s0"
    if cos in runs:
        L += ["", f"**LambdaMART given the query-candidate cosines** (`cos`: cosine of the query-side mean and the candidate "
              f"row of text, image_effnet, image, meta; 4 columns more, same settings, seed 0): test nDCG@10 "
              f"{runs[cos]['test_ndcg@10']:.4f} (valid {runs[cos]['valid_ndcg@10']:.4f}); vs LambdaMART without them "
              f"{_fmt_cmp(_compare(_pq(runs, cos), _pq(runs, lm)))}; vs the best multimodal model (seed 0) "
              f"{_fmt_cmp(_compare(_pq(runs, cos), _pq(runs, top)))}."]
    a, b = f"{tb}.-image_effnet.s0", f"{tb}.-image.s0"
    L += ["", "**Handcrafted vs pretrained image**: retrained (same model, seed 0): "]
    if a in runs and b in runs:
        L[-1] += (f"keeping only the handcrafted `image` (retrained without `image_effnet`) vs keeping only the pretrained "
                  f"`image_effnet` (retrained without `image`): Δ = {_fmt_cmp(_compare(_pq(runs, b), _pq(runs, a)))} "
                  "(positive = the pretrained features rank better).")
    else:
        L[-1] += "the retraining runs were not run."
    # Always measured: the same trained model, one image modality masked at test time (seed-averaged).
    L[-1] += (f" At test time (`{tb}`, seeds averaged): masking the handcrafted `image` instead of the pretrained "
              f"`image_effnet` leaves Δ = {_fmt_cmp(_compare(_mean_pq(runs, top, 'image'), _mean_pq(runs, top, 'image_effnet')))} "
              "(positive = the model relies more on the pretrained features).")
    L.append("")
    return L


def criteria_section(runs: dict, scores_dir: Path, args, cot: str, fus: str, lm: str) -> list[str]:
    sets, _, _ = load_task(Path(args.features), Path(args.data_dir))
    offsets = sets["test"].offsets
    L = ["### The V2 roadmap criteria, measured", "",
         "Per seed: image-masking drop = relative drop of test nDCG@10 when both image modalities (`image_effnet`, "
         "`image`; candidate and query side) are replaced by their training mean; attention share = mean attention-pool "
         "weight per modality on the test candidates, the candidate token and the query-side token of a modality added "
         "up (the largest one is shown); correlations = mean within-query Spearman of the test scores with the V1 "
         "heuristic's and with LambdaMART's (same seed).", "",
         "| model | seed | image-masking drop (≥ 5%) | largest modality attention share (≤ 60%) | Spearman with V1 (< 0.90) | Spearman with LambdaMART (< 0.90) |",
         "|---|---|---|---|---|---|"]
    verdicts = {}
    for label, name in (("V2 fusion", fus), ("CoTRR", cot)):
        drops, tops, v1s, lms = [], [], [], []
        for n in _seed_names(runs, name):
            r = runs[n]
            full, masked_ = np.mean(r["test_per_query"]), np.mean(r["masked_per_query"]["images"])
            drop = (full - masked_) / full
            share = _grouped_share(r["attention_share"])
            top_mod = max(share, key=share.get)
            seed = r["spec"]["seed"]
            v1 = _spearman(scores_dir, n, "heuristic.s0", offsets)
            lmc = _spearman(scores_dir, n, f"{lm.rsplit('.s', 1)[0]}.s{seed}", offsets)
            drops.append(drop)
            tops.append(share[top_mod])
            v1s.append(v1)
            lms.append(lmc)
            L.append(f"| {label} | {seed} | {drop:+.1%} | {top_mod} {share[top_mod]:.1%} | "
                     f"{'—' if v1 is None else f'{v1:.3f}'} | {'—' if lmc is None else f'{lmc:.3f}'} |")
        verdicts[label] = (np.mean(drops) >= 0.05, max(tops) <= 0.60,
                           _all_below(v1s, 0.90), _all_below(lms, 0.90))
    L.append("")
    v = verdicts["V2 fusion"]
    L.append(f"V2 (`{fus.rsplit('.s', 1)[0]}`), over its seeds: image-masking drop ≥ 5% (seed mean) {_met(v[0])}; largest "
             f"modality share ≤ 60% (every seed) {_met(v[1])}; correlation with V1 < 0.90 (every seed) {_met(v[2])}; "
             f"correlation with LambdaMART < 0.90 (every seed) {_met(v[3])}.")
    L.append("")
    return L


def switches_section(runs: dict, fus: str) -> list[str]:
    picks = picks_of(runs)
    names = ["fusion.off.s0"] + [f"fusion.{k}.s0" for k in SWITCHES] + ["fusion.preset.s0"]
    names = [n for n in names if n in runs]
    if not names:
        return []
    L = ["### Ablation of the V2 roadmap switches (seed 0; Δ vs all switches off, paired over test queries)", "",
         "| V2 variant | valid nDCG@10 | test nDCG@10 | Δ test vs off [CI95] p | image-masking drop | largest modality share |",
         "|---|---|---|---|---|---|"]
    off = _pq(runs, "fusion.off.s0") if "fusion.off.s0" in runs else None
    for n in names:
        r = runs[n]
        share = _grouped_share(r["attention_share"])
        top_mod = max(share, key=share.get)
        full, m = np.mean(r["test_per_query"]), np.mean(r["masked_per_query"]["images"])
        cmp = "—" if n == "fusion.off.s0" or off is None else _fmt_cmp(_compare(_pq(runs, n), off))
        label = n.rsplit(".s", 1)[0].split(".", 1)[1] + (" ← chosen on valid" if n == fus else "")
        if n not in picks.get("candidates", [n]):
            label += " (finished after the choice)"
        L.append(f"| {label} | {r['valid_ndcg@10']:.4f} | {r['test_ndcg@10']:.4f} | {cmp} | {(full - m) / full:+.1%} | "
                 f"{top_mod} {share[top_mod]:.1%} |")
    L += ["", "Switch weights: " + ", ".join(f"{k} {v}" for k, v in SWITCHES.items()) + "; `preset` = the preset's "
          "combination (entropy 0.01, modality dropout 0.1, reconstruction 0.1).", ""]
    off_seeds = [runs[n]["test_ndcg@10"] for n in _seed_names(runs, "fusion.off.s0")]
    if len(off_seeds) > 1:  # the yardstick for a one-seed difference: how far the off variant moves by seed alone
        L += [f"Seed noise: the off variant alone gives test nDCG@10 {min(off_seeds):.4f}–{max(off_seeds):.4f} over "
              f"{len(off_seeds)} seeds (range {np.ptp(off_seeds):.4f}); a seed-0 Δ inside that range is not evidence of "
              "a switch's effect (see the seed-averaged comparison above).", ""]
    return L


def missing_section(runs: dict) -> list[str]:
    """The planned runs that are not in the run file (cut for time), plan by plan — said, not hidden."""
    gone = {p: [s.name for s in plan(p, runs) if s.name not in runs]
            for p in ("switches", "main", "main-off-seeds", "modalities")}
    gone = {p: names for p, names in gone.items() if names}
    if not gone:
        return []
    return (["### Planned but not run", "", "These runs of the plans were not trained (cut for the session's time "
             "budget); the tables above say 'not run' / '—' where they would appear.", ""]
            + [f"- `{p}`: " + ", ".join(f"`{n}`" for n in names) for p, names in gone.items()] + [""])


def audit_section() -> list[str]:
    if not AUDIT_FILE.is_file():
        return ["### Audit of the best model", "", "not run yet.", ""]
    rep = json.loads(AUDIT_FILE.read_text())
    meta = rep["meta"]
    L = ["### Audit of the best multimodal model against LambdaMART", "",
         f"`python benchmarks/p4_ml100k_rerank.py audit`: `{meta.get('model_run')}` vs `{meta.get('baseline_run')}` "
         f"(the task's seen / held-out events passed, so `temporal_leakage` runs; {meta.get('audit_seconds')} s). "
         f"**Verdict: {rep['verdict']}**.", "",
         "| check | status | value | threshold |", "|---|---|---|---|"]
    for c in rep["checks"]:
        val = c.get("value")
        L.append(f"| {c['name']} | {c['status']} | {val if not isinstance(val, float) else f'{val:.4g}'} | {c.get('threshold')} |")
    L += [""] + [f"- {r}" for r in rep["reasons"]] + [""]
    return L


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="train the runs of a plan (skips finished ones)")
    run.add_argument("--plan", required=True, help="tune-lambdamart | tune-cotrr | switches | main | main-off-seeds | "
                     "modalities (= modalities-core + modalities-rest)")
    aud = sub.add_parser("audit", help="audit the best multimodal model (on validation) against the tuned LambdaMART")
    rep = sub.add_parser("report", help="write benchmarks/results/p4_ml100k.md and refresh BENCHMARKS.md")
    for p in (run, aud, rep):
        p.add_argument("--features", required=True, help="folder written by mmrank data features --dataset ml100k")
        p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"), help="folder holding ml-100k/")
        p.add_argument("--scores", default="/tmp/mmrank_p4_ml100k_scores", help="where test scores (.npy) go")
    args = ap.parse_args()
    {"run": cmd_run, "audit": cmd_audit, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()

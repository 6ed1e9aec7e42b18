"""The report's figures, drawn with matplotlib from the audit's JSON and returned as inline
base64 PNG (``data:`` URIs): the HTML needs no external file, script or font.

Each function takes the ``extras`` section of ``audit.json`` and returns ``(title, data_uri)`` or
None when the audit holds no data for that plot.
"""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

Plot = tuple[str, str] | None


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _err(ci: dict) -> list[list[float]]:
    return [[ci["mean"] - ci["low"]], [ci["high"] - ci["mean"]]]


def metrics_with_ci(extras: dict) -> Plot:
    """Bars of the model's and the baseline's mean metric with CI95, and the gain Δ with its CI95,
    from ``extras["metrics"]`` (written by the significance check); None when absent."""
    m = extras.get("metrics")
    if not m:
        return None
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3))
    for i, (name, color) in enumerate((("model", "#2b6cb0"), ("baseline", "#a0aec0"))):
        a.bar(i, m[name]["mean"], yerr=_err(m[name]), color=color, capsize=6)
    a.set_xticks([0, 1], ["model", "baseline"])
    a.set_ylabel(m["metric"])
    a.set_title(f"mean {m['metric']} with CI95")
    d = m["delta"]
    b.errorbar([d["mean"]], [0], xerr=_err(d), fmt="o", color="#2b6cb0", capsize=6)
    b.axvline(0, color="black", lw=0.8)
    b.set_yticks([])
    b.set_title("Δ model − baseline, CI95")
    return f"{m['metric']}: model and baseline with CI95", _png(fig)


def domain_forest(extras: dict) -> Plot:
    """Forest plot of the per-domain Δ with CI95 and Holm-adjusted p, from
    ``extras["per_domain"]`` (significance check); None when no domain was tested."""
    rows = extras.get("per_domain")
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * len(rows)))
    y = np.arange(len(rows))[::-1]
    ax.errorbar([r["delta"] for r in rows], y, xerr=[[r["delta"] - r["low"] for r in rows], [r["high"] - r["delta"] for r in rows]],
                fmt="s", color="#2b6cb0", capsize=4)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y, [f"{r['domain']} (n={r['queries']}, p_holm={r['p_holm']:.2g})" for r in rows])
    ax.set_xlabel("Δ model − baseline (CI95)")
    return "per-domain Δ (forest plot, Holm-adjusted p)", _png(fig)


def ablation_bars(extras: dict) -> Plot:
    """Grouped bars of the metric drop per modality for each ablation kind (training mean,
    shuffled, retrained without, treated as missing) with CI95, from ``extras["ablation"]``;
    None when absent."""
    abl = extras.get("ablation")
    if not abl:
        return None
    kinds = [k for k in ("train_mean", "shuffled", "retrained_without", "treated_as_missing")
             if any(k in v for v in abl.values())]
    mods = sorted(abl)
    fig, ax = plt.subplots(figsize=(1.5 + 1.3 * len(mods), 3))
    width = 0.8 / len(kinds)
    for j, k in enumerate(kinds):
        x = np.arange(len(mods)) + j * width
        mean = [abl[m].get(k, np.nan) for m in mods]
        ci = [abl[m].get(f"{k}_ci", [np.nan, np.nan]) for m in mods]
        err = [[mu - c[0] for mu, c in zip(mean, ci)], [c[1] - mu for mu, c in zip(mean, ci)]]
        ax.bar(x, mean, width, yerr=err, capsize=3, label=k.replace("_", " "))
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(np.arange(len(mods)) + width * (len(kinds) - 1) / 2, mods)
    ax.set_ylabel("metric drop when removed")
    ax.legend(fontsize=8)
    return "modality ablation: metric drop per modality (CI95)", _png(fig)


def attention_bars(extras: dict) -> Plot:
    """Bars of the mean attention share per modality token, from ``extras["attention"]``, with
    a dashed line at 0.6 (the default WARN level); None for models without attention."""
    att = extras.get("attention")
    if not att:
        return None
    fig, ax = plt.subplots(figsize=(1.5 + 1.0 * len(att), 3))
    names = sorted(att)
    ax.bar(names, [att[n] for n in names], color="#805ad5")
    ax.axhline(0.6, color="#c53030", ls="--", lw=1, label="WARN above")
    ax.set_ylim(0, 1)
    ax.set_ylabel("mean attention share")
    ax.legend(fontsize=8)
    return "attention share per modality token", _png(fig)


def expert_usage_bars(extras: dict) -> Plot:
    """Grouped bars of each expert's mean router probability per modality, from
    ``extras["expert_usage"]`` (MoE recommenders), with a dashed line at 0.6 (the default WARN
    level); None when absent."""
    usage = extras.get("expert_usage")  # {modality: [share per expert]} (MoE recommenders)
    if not usage:
        return None
    mods = sorted(usage)
    k = max(len(v) for v in usage.values())
    fig, ax = plt.subplots(figsize=(1.5 + 1.3 * len(mods), 3))
    width = 0.8 / k
    for j in range(k):
        ax.bar(np.arange(len(mods)) + j * width, [usage[m][j] if j < len(usage[m]) else np.nan for m in mods],
               width, label=f"expert {j}")
    ax.axhline(0.6, color="#c53030", ls="--", lw=1, label="WARN above")
    ax.set_xticks(np.arange(len(mods)) + width * (k - 1) / 2, mods)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of routing")
    ax.legend(fontsize=8)
    return "expert usage per modality (mean router probability)", _png(fig)


def reliability_diagram(extras: dict) -> Plot:
    """Predicted probability against observed positive rate per non-empty calibration bin, from
    ``extras["reliability"]`` (the run's ``mmrank.calibrate`` rows); None when the run has none."""
    rows = [r for r in extras.get("reliability") or [] if r.get("count")]  # mmrank.calibrate rows
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(3.5, 3.5))
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1)
    ax.plot([r["mean_p"] for r in rows], [r["positive_rate"] for r in rows], "o-", color="#2b6cb0")
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed frequency")
    return "reliability diagram (the run's calibration data)", _png(fig)


def agreement_scatter(extras: dict) -> Plot:
    """Scatter of model against baseline scores for a sample of test candidates, coloured by
    label, from ``extras["agreement_scatter"]``; None when absent."""
    sc = extras.get("agreement_scatter")
    if not sc:
        return None
    fig, ax = plt.subplots(figsize=(4, 4))
    pts = ax.scatter(sc["baseline"], sc["model"], c=sc["label"], s=6, cmap="viridis", alpha=0.6)
    fig.colorbar(pts, ax=ax, label="label")
    ax.set_xlabel("baseline score")
    ax.set_ylabel("model score")
    return "model vs baseline scores (sample of test candidates)", _png(fig)


def permutation_control(extras: dict) -> Plot:
    """Bars of the chance level, the permuted-label models' mean and the model's test metric,
    from ``extras["permutation"]``; None when the permutation control did not run."""
    p = extras.get("permutation")
    if not p:
        return None
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar(["chance", "permuted labels", "model"], [p["chance"], p["permuted"], p["model"]],
           color=["#a0aec0", "#ed8936", "#2b6cb0"])
    ax.set_ylabel("test metric")
    return "label permutation control", _png(fig)


def training_curves(extras: dict) -> Plot:
    """Per-epoch training curves from ``extras["training_curves"]``: series named ``*loss*`` in
    one panel, every other series in a second; None when the run logged none."""
    curves = extras.get("training_curves")
    if not curves:
        return None
    # Losses and ranking metrics live on different scales: one panel each.
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(8, 3))
    for name, pts in sorted(curves.items()):
        arr = np.asarray(pts, float)
        ax = loss_ax if "loss" in name else metric_ax
        ax.plot(arr[:, 0], arr[:, 1], marker=".", label=name)
    for ax, title in ((loss_ax, "loss"), (metric_ax, "validation metric")):
        ax.set_xlabel("epoch")
        ax.set_title(title, fontsize=9)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return "training curves (run logs, per epoch)", _png(fig)


ALL = (metrics_with_ci, domain_forest, ablation_bars, expert_usage_bars, attention_bars, reliability_diagram,
       agreement_scatter, permutation_control, training_curves)

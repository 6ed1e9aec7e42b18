"""expert_usage: has a mixture-of-experts content tower collapsed onto one expert?

Per modality, each expert's share of the routing: the mean router probability over the catalogue
items that have the modality (``ranker.expert_usage()``), and beside it the share of items whose
top-1 expert it is. When one expert takes more than ``warn_share`` of a modality's routing mass,
the other experts are dead weight (the load-balancing loss lost, or its weight is too low): WARN.
Models without experts: SKIP.
"""

from __future__ import annotations

from mmrank.audit.result import PASS, WARN, CheckResult

NAME = "expert_usage"


def check(ctx) -> CheckResult:
    """Measure, per modality, the largest routing share one expert of a mixture-of-experts
    content tower takes (mean router probability over items that have the modality).

    Rule (policy ``expert_usage.warn_share``): WARN when any modality's top expert exceeds it —
    the other experts are unused (collapsed routing); PASS otherwise. SKIP when the model has no
    ``expert_usage`` method, or no item has any modality. Never FAILs. ``value`` is the largest
    share over all modalities; evidence adds each expert's top-1 share and the collapsed modalities."""
    if not callable(getattr(ctx.model, "expert_usage", None)):
        return CheckResult.skip(NAME, f"{type(ctx.model).__name__} has no mixture of experts")
    limit = float(ctx.policy[NAME]["warn_share"])
    usage = {m: [float(s) for s in shares] for m, shares in ctx.model.expert_usage().items()
             if all(s == s for s in shares)}  # a modality no item has routes nothing (NaN means)
    if not usage:
        return CheckResult.skip(NAME, "the model routed no items (no item has any modality)")
    top = {m: max(shares) for m, shares in usage.items()}
    worst = max(top, key=top.get)
    ctx.extras["expert_usage"] = usage
    evidence = {"mean_router_probability": usage, "top1_share": ctx.model.expert_top1_share(),
                "largest_share": top, "experts_per_modality": {m: len(s) for m, s in usage.items()}}
    rule = f"WARN if one expert takes > {limit:g} of a modality's routing"
    collapsed = [m for m, share in top.items() if share > limit]
    if collapsed:
        return CheckResult(NAME, WARN, top[worst], limit, rule, evidence | {"collapsed": collapsed},
                           f"one expert takes {top[worst]:.0%} of the {worst} routing: the others are unused — "
                           "raise model.params.balance_weight or use fewer experts")
    return CheckResult(NAME, PASS, top[worst], limit, rule, evidence)

"""attention_share: how the attention mass of an attention model splits over modality tokens.

Asks the model itself (``model.attention_share(rset) -> {modality: mean share}``, the mean over
test candidates of the attention weight on each modality's token). One modality taking more
than ``warn_share`` of the mass means the others are close to ignored: WARN. Models without
attention (GBDTs, linear) are skipped.
"""

from __future__ import annotations

from mmrank.audit.context import AuditContext
from mmrank.audit.result import PASS, WARN, CheckResult

NAME = "attention_share"


def check(ctx: AuditContext) -> CheckResult:
    """Measure the largest share of attention mass one modality token takes on the test set.

    Rule (policy ``attention_share.warn_share``): WARN when the top modality's mean share exceeds
    it — the other modalities are close to ignored; PASS otherwise. SKIP when the model has no
    ``attention_share`` method (no attention over modalities) or attends over one modality only.
    The check never FAILs. ``value`` is the top share; the shares go to ``ctx.extras["attention"]``."""
    share_of = getattr(ctx.model, "attention_share", None)
    if share_of is None:
        return CheckResult.skip(NAME, f"{type(ctx.model).__name__} has no attention over modalities")
    shares = {str(k): float(v) for k, v in share_of(ctx.test).items()}
    if len(shares) < 2:  # one modality holds all the mass by construction: nothing to compare
        return CheckResult.skip(NAME, f"the model attends over a single modality ({', '.join(shares)})")
    limit = float(ctx.policy[NAME]["warn_share"])
    ctx.extras["attention"] = shares
    top = max(shares, key=shares.get)
    rule = f"WARN if one modality's share > {limit:g}"
    evidence = {"shares": shares, "total": sum(shares.values())}
    if shares[top] > limit:
        return CheckResult(NAME, WARN, shares[top], limit, rule, evidence,
                           f"{top} takes {shares[top]:.0%} of the attention: the other modalities are nearly "
                           "ignored — check their scale/normalisation, or regularise the attention (dropout per modality)")
    return CheckResult(NAME, PASS, shares[top], limit, rule, evidence)

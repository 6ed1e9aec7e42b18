"""Losses: known values computed by hand, padding that changes nothing, finite gradients."""

from __future__ import annotations

import math

import pytest
import torch

from mmrank.errors import ConfigError
from mmrank.losses import (
    check_loss_params, combined_loss, focal_loss, get_loss, infonce_loss, lambdaloss, listmle_loss, ranknet_loss,
)

LIST_LOSSES = {
    "listmle": listmle_loss,
    "focal": focal_loss,
    "combined": combined_loss,
    "lambdaloss": lambdaloss,
    "ranknet": ranknet_loss,
}


def test_listmle_two_items_by_hand():
    # labels say item 0 first: P = e^a/(e^a+e^b) · 1, loss = log(1 + e^(b-a)).
    s = torch.tensor([[2.0, 0.5]])
    y = torch.tensor([[1.0, 0.0]])
    m = torch.ones(1, 2, dtype=torch.bool)
    assert listmle_loss(s, y, m).item() == pytest.approx(math.log1p(math.exp(0.5 - 2.0)), rel=1e-6)


def test_listmle_three_items_by_hand():
    s = torch.tensor([[0.0, 1.0, 2.0]])
    y = torch.tensor([[2.0, 1.0, 0.0]])  # order 0, 1, 2
    m = torch.ones(1, 3, dtype=torch.bool)
    expected = (math.log(1 + math.e + math.e**2) - 0.0) + (math.log(math.e + math.e**2) - 1.0)
    assert listmle_loss(s, y, m).item() == pytest.approx(expected, rel=1e-6)


def test_listmle_ties_are_broken_at_random():
    s = torch.tensor([[3.0, 0.0]])
    y = torch.tensor([[1.0, 1.0]])
    m = torch.ones(1, 2, dtype=torch.bool)
    values = {round(listmle_loss(s, y, m, generator=torch.Generator().manual_seed(i)).item(), 5) for i in range(20)}
    # Both tie orders occur: log(1+e^-3) and log(1+e^3).
    assert values == {round(math.log1p(math.exp(-3.0)), 5), round(math.log1p(math.exp(3.0)), 5)}


def test_ranknet_and_focal_by_hand():
    s = torch.tensor([[1.0, 0.0]])
    y = torch.tensor([[0.0, 1.0]])
    m = torch.ones(1, 2, dtype=torch.bool)
    assert ranknet_loss(s, y, m).item() == pytest.approx(math.log1p(math.exp(1.0)), rel=1e-6)
    p0, p1 = 1 / (1 + math.exp(-1.0)), 0.5
    # item 0 negative, item 1 positive; alpha 0.25, gamma 2.
    expected = (-(0.75) * p0**2 * math.log(1 - p0) + -(0.25) * (1 - p1) ** 2 * math.log(p1)) / 2
    assert focal_loss(s, y, m).item() == pytest.approx(expected, rel=1e-6)


def test_combined_is_the_weighted_sum():
    g = torch.Generator().manual_seed(0)
    s, y = torch.randn(4, 6, generator=g), torch.randint(0, 3, (4, 6), generator=g).float()
    m = torch.ones(4, 6, dtype=torch.bool)
    expected = 0.7 * listmle_loss(s / 2, y, m, generator=torch.Generator().manual_seed(1)) + 0.3 * focal_loss(s / 2, y, m)
    got = combined_loss(s, y, m, temperature=2.0, generator=torch.Generator().manual_seed(1))
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_lambdaloss_prefers_the_right_order():
    y = torch.tensor([[2.0, 1.0, 0.0, 0.0]])
    m = torch.ones(1, 4, dtype=torch.bool)
    good = lambdaloss(torch.tensor([[3.0, 2.0, 1.0, 0.0]]), y, m)
    bad = lambdaloss(torch.tensor([[0.0, 1.0, 2.0, 3.0]]), y, m)
    assert bad.item() > good.item() > 0


@pytest.mark.parametrize("name", sorted(LIST_LOSSES))
def test_padding_changes_nothing(name):
    fn = LIST_LOSSES[name]
    g = torch.Generator().manual_seed(0)
    s = torch.randn(3, 5, generator=g)
    y = torch.randint(0, 3, (3, 5), generator=g).float()
    m = torch.ones(3, 5, dtype=torch.bool)
    # Append 4 padded slots holding garbage (huge scores, high labels): the loss must not move.
    s_pad = torch.cat([s, torch.full((3, 4), 50.0)], dim=1)
    y_pad = torch.cat([y, torch.full((3, 4), 2.0)], dim=1)
    m_pad = torch.cat([m, torch.zeros(3, 4, dtype=torch.bool)], dim=1)
    kw = {"generator": torch.Generator().manual_seed(3)} if name in ("listmle", "combined") else {}
    kw_pad = {"generator": torch.Generator().manual_seed(3)} if name in ("listmle", "combined") else {}
    if name in ("listmle", "combined"):
        y = y + torch.arange(5) * 0.01  # no ties, so the random tie-break cannot differ
        y_pad[:, :5] = y
    a = fn(s, y, m, **kw)
    b = fn(s_pad, y_pad, m_pad, **kw_pad)
    assert a.item() == pytest.approx(b.item(), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("name", sorted(LIST_LOSSES))
def test_gradients_are_finite_and_padding_gets_none(name):
    fn = LIST_LOSSES[name]
    s = (torch.randn(4, 7) * 20).requires_grad_()
    y = torch.randint(0, 3, (4, 7)).float()
    m = torch.rand(4, 7) > 0.3
    m[0] = False  # a query with no real candidate at all
    fn(s, y, m).backward()
    assert torch.isfinite(s.grad).all()
    assert (s.grad[~m] == 0).all()


def test_infonce_aligned_views_score_lower():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(16, 8, generator=g)
    aligned = infonce_loss(a, a + 0.01 * torch.randn(16, 8, generator=g))
    shuffled = infonce_loss(a, a[torch.randperm(16, generator=g)])
    assert aligned.item() < 0.1 < shuffled.item()
    mask = torch.tensor([True] * 10 + [False] * 6)
    assert infonce_loss(a, a, mask).item() == pytest.approx(infonce_loss(a[:10], a[:10]).item(), rel=1e-6)


def test_loss_registry_rejects_unknown_names_and_options():
    assert get_loss("lambdaloss") is lambdaloss
    with pytest.raises(ConfigError, match="use one of"):
        get_loss("softmax")
    with pytest.raises(ConfigError, match="train.loss_params.kk"):
        check_loss_params("lambdaloss", {"kk": 3})

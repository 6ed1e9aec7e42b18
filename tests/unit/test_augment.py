"""Sequence augmentations and the contrastive term (mmrank.sequential.augment / contrastive)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmrank.errors import ConfigError
from mmrank.sequential.augment import crop, mask, random_view, reorder, substitute, substitute_table
from mmrank.sequential.contrastive import contrastive_loss
from mmrank.sequential.data import Histories
from mmrank.sequential.sasrec import SASRecNet, SASRecRanker

torch.set_num_threads(1)


def batch() -> torch.Tensor:
    """Left-padded windows of lengths 10, 5 and 1 (items 1..)."""
    seq = torch.zeros((3, 12), dtype=torch.long)
    seq[0, 2:] = torch.arange(1, 11)
    seq[1, 7:] = torch.arange(21, 26)
    seq[2, 11] = 31
    return seq


def real_items(row: torch.Tensor) -> list[int]:
    return row[row > 0].tolist()


def test_crop_keeps_a_contiguous_right_aligned_piece():
    g = torch.Generator().manual_seed(0)
    out, real = crop(batch(), 0.6, g)
    for r, n in enumerate((10, 5, 1)):
        kept = real_items(out[r])
        assert len(kept) == max(1, math.ceil(0.6 * n))
        assert kept == list(range(kept[0], kept[0] + len(kept)))  # contiguous, in order
        assert bool(real[r, -len(kept):].all()) and not bool(real[r, :-len(kept)].any())  # right-aligned


def test_mask_hides_floor_gamma_n_items_but_keeps_their_positions():
    g = torch.Generator().manual_seed(0)
    seq = batch()
    out, real = mask(seq, 0.3, g)
    assert torch.equal(real, seq > 0)
    hidden = (real & (out == 0)).sum(1).tolist()
    assert hidden == [3, 1, 0]
    kept = real & (out > 0)
    assert torch.equal(out[kept], seq[kept])


def test_reorder_shuffles_one_block_and_keeps_the_rest():
    g = torch.Generator().manual_seed(1)
    seq = batch()
    out, real = reorder(seq, 0.6, g)
    assert sorted(real_items(out[0])) == list(range(1, 11))
    moved = (out[0] != seq[0]).nonzero().flatten().tolist()
    assert moved and max(moved) - min(moved) < 6  # within one block of floor(0.6 * 10) = 6
    assert torch.equal(out[2], seq[2])  # one item: nothing to reorder


def test_substitute_uses_the_most_correlated_item():
    hist = Histories(np.array([0, 3, 6, 8]), np.array([1, 2, 3, 1, 2, 4, 5, 2]))
    table = substitute_table(hist, 5)
    # 2 neighbours: 1 (twice), 3, 4, 5 -> 1; 1 -> 2; 5 -> 2; 3 -> 2; 4 -> 2.
    assert table.tolist() == [0, 2, 1, 2, 2, 2]
    seq = torch.tensor([[0, 1, 2, 3, 4, 5]])
    out, real = substitute(seq, 1.0, table, torch.Generator().manual_seed(0))
    assert out.tolist() == [[0, 2, 1, 2, 2, 2]] and torch.equal(real, seq > 0)


def test_random_view_is_seeded_and_dropout_view_is_the_input():
    a = random_view(batch(), ["crop", "mask", "reorder"], {"crop": 0.6, "mask": 0.3, "reorder": 0.6},
                    generator=torch.Generator().manual_seed(4))
    b = random_view(batch(), ["crop", "mask", "reorder"], {"crop": 0.6, "mask": 0.3, "reorder": 0.6},
                    generator=torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    same, real = random_view(batch(), ["dropout"], {})
    assert torch.equal(same, batch()) and torch.equal(real, batch() > 0)


def test_contrastive_term_prefers_identical_views_and_training_lowers_it():
    torch.manual_seed(0)
    net = SASRecNet(40, hidden=16, layers=1, heads=2, max_len=12, dropout=0.0)
    inputs = torch.randint(1, 41, (16, 12))
    same = SASRecRanker.Params(cl_weight=0.1, cl_augmentations=["dropout"], cl_temperature=0.1)
    aug = SASRecRanker.Params(cl_weight=0.1, cl_augmentations=["crop", "mask"], cl_temperature=0.1)
    with torch.no_grad():
        identical, before = float(contrastive_loss(net, inputs, same)), float(contrastive_loss(net, inputs, aug))
    assert identical < before
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    torch.manual_seed(1)
    for _ in range(30):
        opt.zero_grad()
        contrastive_loss(net, inputs, aug).backward()
        opt.step()
    with torch.no_grad():
        torch.manual_seed(2)
        after = float(contrastive_loss(net, inputs, aug))
    assert after < 0.5 * before
    with pytest.raises(ConfigError):
        SASRecRanker(cl_augmentations=["rotate"])

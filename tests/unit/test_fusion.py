"""V2 fusion: every switch changes the training loss; none changes scoring when off."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmrank.errors import ConfigError
from mmrank.losses import combined_loss
from mmrank.models.fusion import FusionV2, grad_reverse
from rerank_support import known_function_set

SMALL = dict(d_model=16, n_heads=2, n_layers=2, mlp_hidden=16, dropout=0.0)
SWITCHES = {
    "entropy_weight": {"entropy_weight": 0.5},
    "modality_dropout": {"modality_dropout": 0.5},
    "reconstruction_weight": {"reconstruction_weight": 1.0},
    "infonce_weight": {"infonce_weight": 1.0, "infonce_pair": ["image", "text"]},
    "adversarial_weight": {"adversarial_weight": 1.0},
}


def training_loss(params: dict, rset) -> tuple[float, dict]:
    torch.manual_seed(0)
    model = FusionV2(**SMALL, **params).prepare(rset)
    net = model.network_.train()
    batch = model.padded_queries(rset).batch(np.arange(rset.n_queries))
    torch.manual_seed(1)
    scores, aux = net(batch["x"], batch["mask"])
    loss = combined_loss(scores, batch["labels"], batch["mask"], generator=torch.Generator().manual_seed(0))
    total = loss + sum(aux.values(), torch.zeros(()))
    return total.item(), {k: v.item() for k, v in aux.items()}


@pytest.mark.parametrize("switch", sorted(SWITCHES))
def test_each_switch_changes_the_loss(switch):
    rset = known_function_set(4, per_query=6)
    base, base_aux = training_loss({}, rset)
    on, aux = training_loss(SWITCHES[switch], rset)
    assert base_aux == {}
    assert on != pytest.approx(base, abs=1e-7), switch
    if switch != "modality_dropout":
        assert len(aux) == 1 and list(aux.values())[0] != 0.0


def test_default_depth_is_four_and_switches_do_not_touch_scoring():
    rset = known_function_set(3, per_query=5)
    torch.manual_seed(0)
    plain = FusionV2(**{**SMALL, "n_layers": 4}).prepare(rset)
    torch.manual_seed(0)
    switched = FusionV2(**{**SMALL, "n_layers": 4}, entropy_weight=1.0, modality_dropout=0.5).prepare(rset)
    assert FusionV2().params.n_layers == 4
    assert np.array_equal(plain.score(rset), switched.score(rset))


def test_gradient_reversal_flips_the_gradient():
    x = torch.ones(3, requires_grad=True)
    (grad_reverse(x, 2.0) * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.equal(x.grad, torch.tensor([-2.0, -4.0, -6.0]))


def test_infonce_pair_must_name_tokens():
    rset = known_function_set(2, per_query=4)
    with pytest.raises(ConfigError, match="infonce_pair"):
        FusionV2(**SMALL, infonce_weight=1.0, infonce_pair=["image", "audio"]).prepare(rset)


def test_fusion_trains_and_roundtrips(tmp_path):
    torch.set_num_threads(1)
    train, test = known_function_set(30, seed=1), known_function_set(8, seed=3)
    model = FusionV2(**SMALL, entropy_weight=0.01, modality_dropout=0.1, reconstruction_weight=0.1,
                     infonce_weight=0.1, adversarial_weight=0.1)
    model.fit(train, known_function_set(8, seed=2), {"max_epochs": 3, "progress": False, "threads": 1})
    model.save(tmp_path)
    assert np.array_equal(FusionV2.load(tmp_path).score(test), model.score(test))

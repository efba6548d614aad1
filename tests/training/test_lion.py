"""Lion (the lion-pytorch package, optimizer=lion) against the paper's update rule written out by hand, state_dict
round trip, and convergence; a bad lr is refused by the config check."""

from __future__ import annotations

import copy

import pytest
import torch
from lion_pytorch import Lion

from conftest import tiny_config
from losslab.config.validation import validate
from losslab.errors import LosslabError

LR, WD, BETAS = 0.1, 0.5, (0.9, 0.99)
P0 = [1.0, -2.0, 0.5, 3.0, -1.0]
# Element 2 has a large positive first gradient and a small negative second one: at step 2 the momentum wins,
# so sign(c) = +1 while sign(g) = -1. Element 4 has a zero gradient at step 1 (sign(c) = 0, only decay applies).
G1 = [0.3, -0.7, 10.0, 2.0, 0.0]
G2 = [-0.4, 0.2, -0.5, 1.0, 0.8]


def _tensor(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def _reference_step(
    p: torch.Tensor, m: torch.Tensor, g: torch.Tensor, lr: float, betas: tuple[float, float], wd: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Algorithm 2 of Chen et al. 2023, independent of the class under test."""
    beta1, beta2 = betas
    c = beta1 * m + (1 - beta1) * g
    p = p * (1 - lr * wd) - lr * torch.sign(c)
    m = beta2 * m + (1 - beta2) * g
    return p, m


def _step(opt: torch.optim.Optimizer, param: torch.Tensor, grad: list[float]) -> None:
    param.grad = _tensor(grad)
    opt.step()


def test_two_steps_match_the_update_rule():
    param = torch.nn.Parameter(_tensor(P0))
    opt = Lion([param], lr=LR, betas=BETAS, weight_decay=WD)

    p_ref, m_ref = _tensor(P0), torch.zeros(len(P0), dtype=torch.float64)
    for grad in (G1, G2):
        p_ref, m_ref = _reference_step(p_ref, m_ref, _tensor(grad), LR, BETAS, WD)
        _step(opt, param, grad)
        torch.testing.assert_close(param.detach(), p_ref, rtol=0, atol=1e-12)
        torch.testing.assert_close(opt.state[param]["exp_avg"], m_ref, rtol=0, atol=1e-12)


def test_literal_values_including_momentum_overriding_the_gradient_sign():
    param = torch.nn.Parameter(_tensor(P0))
    opt = Lion([param], lr=LR, betas=BETAS, weight_decay=WD)
    decay = 1 - LR * WD  # 0.95

    # Step 1: m = 0, so sign(c) = sign(g1); the zero gradient of element 4 leaves only the decay.
    _step(opt, param, G1)
    p1 = [1.0 * decay - 0.1, -2.0 * decay + 0.1, 0.5 * decay - 0.1, 3.0 * decay - 0.1, -1.0 * decay]
    torch.testing.assert_close(param.detach(), _tensor(p1), rtol=0, atol=1e-12)

    # Step 2, element 2: m1 = 0.01 * 10 = 0.1, c = 0.9 * 0.1 + 0.1 * (-0.5) = 0.04 > 0 although g2 < 0.
    m1 = 0.01 * 10.0
    c = BETAS[0] * m1 + (1 - BETAS[0]) * G2[2]
    assert c > 0 > G2[2]
    _step(opt, param, G2)
    assert param[2].item() == pytest.approx(p1[2] * decay - LR, abs=1e-12)  # down, though -g2 points up
    # Element 0: m1 = 0.003, c = 0.0027 - 0.04 < 0, same sign as g2 = -0.4, so the weight moves up.
    assert param[0].item() == pytest.approx(p1[0] * decay + LR, abs=1e-12)


def test_state_dict_round_trip():
    param_a = torch.nn.Parameter(_tensor(P0))
    opt_a = Lion([param_a], lr=LR, betas=BETAS, weight_decay=WD)
    _step(opt_a, param_a, G1)
    # Deep copies: opt_a's next step mutates its state and parameters in place.
    saved_state = copy.deepcopy(opt_a.state_dict())
    saved_param = param_a.detach().clone()
    _step(opt_a, param_a, G2)

    param_b = torch.nn.Parameter(saved_param.clone())
    opt_b = Lion([param_b], lr=LR, betas=BETAS, weight_decay=WD)
    opt_b.load_state_dict(saved_state)
    _step(opt_b, param_b, G2)
    torch.testing.assert_close(param_b.detach(), param_a.detach(), rtol=0, atol=0)
    torch.testing.assert_close(opt_b.state[param_b]["exp_avg"], opt_a.state[param_a]["exp_avg"], rtol=0, atol=0)

    # The momentum matters here (element 2), so a fresh optimizer without the loaded state would differ.
    param_c = torch.nn.Parameter(saved_param.clone())
    opt_c = Lion([param_c], lr=LR, betas=BETAS, weight_decay=WD)
    _step(opt_c, param_c, G2)
    assert not torch.equal(param_c.detach(), param_a.detach())


def test_closure_and_params_without_grad():
    used = torch.nn.Parameter(torch.ones(3))
    unused = torch.nn.Parameter(torch.ones(3))
    opt = Lion([used, unused], lr=0.1)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (used * torch.tensor([1.0, -1.0, 2.0])).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == pytest.approx(2.0)
    torch.testing.assert_close(used.detach(), torch.tensor([0.9, 1.1, 0.9]))
    torch.testing.assert_close(unused.detach(), torch.ones(3))
    assert unused not in opt.state


@pytest.mark.parametrize("lr", ["0", "-0.001"])
def test_lion_with_a_bad_lr_is_refused_by_the_config_check(lr):
    with pytest.raises(LosslabError, match="optimizer.lr=.*expected a positive learning rate"):
        validate(tiny_config("optimizer=lion", f"optimizer.lr={lr}"))


def test_linear_regression_loss_drops_tenfold():
    torch.manual_seed(0)
    inputs = torch.randn(256, 4)
    true_w = torch.tensor([[0.5], [-0.3], [0.8], [-0.6]])
    targets = inputs @ true_w + 0.2
    model = torch.nn.Linear(4, 1)
    opt = Lion(model.parameters(), lr=1e-2)

    def loss_fn() -> torch.Tensor:
        return torch.nn.functional.mse_loss(model(inputs), targets)

    with torch.no_grad():
        initial = loss_fn().item()
    for _ in range(200):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
    with torch.no_grad():
        final = loss_fn().item()
    assert final * 10 <= initial, (initial, final)

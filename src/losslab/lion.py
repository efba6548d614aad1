"""Lion (EvoLved Sign Momentum), the optimizer of Chen et al. 2023, "Symbolic Discovery of Optimization
Algorithms" (arXiv:2302.06675), Algorithm 2.

Each step moves every weight by the same magnitude `lr` in the direction of sign(c), where c interpolates the
momentum and the fresh gradient; the momentum itself is then updated with a second, slower rate. Weight decay is
decoupled (AdamW style). tests/test_lion.py checks the optimizer against the paper's update rule written out by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


class Lion(torch.optim.Optimizer):
    """Lion optimizer: sign of an interpolated momentum, decoupled weight decay.

    Because the update has unit magnitude per coordinate, the paper recommends an `lr` 3-10x smaller and a
    `weight_decay` 3-10x larger than for AdamW, keeping lr * weight_decay about the same.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
    ) -> None:
        # `not x > 0` rather than `x <= 0` so that NaN is rejected too.
        if not lr > 0.0:
            raise ValueError(f"Invalid lr: {lr} (must be > 0)")
        if len(betas) != 2:
            raise ValueError(f"Invalid betas: {betas} (must be a pair (beta1, beta2))")
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid betas[{i}] (beta{i + 1}): {beta} (must be in [0, 1))")
        if not weight_decay >= 0.0:
            raise ValueError(f"Invalid weight_decay: {weight_decay} (must be >= 0)")
        defaults = {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Perform one optimization step; `closure` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            # The closure must build a graph to compute gradients, which no_grad would prevent.
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            lr = group["lr"]
            beta1, beta2 = group["betas"]
            weight_decay = group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    raise RuntimeError("Lion does not support sparse gradients")

                state = self.state[p]
                if len(state) == 0:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                exp_avg = state["exp_avg"]

                # Decoupled decay: shrink the weights independently of the gradient signal.
                if weight_decay != 0.0:
                    p.mul_(1.0 - lr * weight_decay)

                # The update direction uses beta1, the momentum tracking uses beta2 (the paper's key twist).
                update = exp_avg.mul(beta1).add_(grad, alpha=1.0 - beta1).sign_()
                p.add_(update, alpha=-lr)

                exp_avg.mul_(beta2).add_(grad, alpha=1.0 - beta2)

        return loss

"""Optimisers over the pixels of G, with exactly one function evaluation per step.

:class:`PixelLBFGS` is limited-memory BFGS (Nocedal & Wright 2006, Algorithm 7.4, the two-loop
recursion) without a line search. It differs from ``torch.optim.LBFGS`` in the two places that
make the raw Gatys objective (values around 1e8 with Caffe VGG19) blow up there:

* the first step (and the first after a reset) moves the pixel that changes most by
  ``first_step`` (default 0.02 of the [0, 1] range), instead of ``1 / ‖g‖₁``, which is tiny and
  depends on the image size, so that the first curvature pair carries information;
* a curvature pair is kept when yᵀs > 1e-10 · ‖y‖ ‖s‖ (relative), not yᵀs > 1e-10 (absolute,
  which depends on the loss scale).
"""

from __future__ import annotations

from collections import deque

import torch
from torch import Tensor


class PixelLBFGS:
    """L-BFGS on one tensor ``x`` (updated in place).

    Call :meth:`step` with the gradient of the objective at the current ``x``. Memory: ``history``
    pairs of (s, y), each two copies of ``x``.
    """

    def __init__(self, x: Tensor, *, history: int = 100, lr: float = 1.0, first_step: float = 0.005) -> None:
        self.x = x
        self.history = history
        self.lr = lr
        self.first_step = first_step
        self.reset()

    def reset(self) -> None:
        """Forget the curvature pairs (after the objective changed or a bad step)."""
        self.pairs: deque[tuple[Tensor, Tensor, float]] = deque(maxlen=self.history)
        self._last_grad: Tensor | None = None
        self._last_step: Tensor | None = None

    @torch.no_grad()
    def step(self, grad: Tensor) -> None:
        """Move ``x`` along the quasi-Newton direction computed from ``grad`` = ∇J(x)."""
        g = grad.detach().reshape(-1)
        if self._last_grad is not None:
            y = g - self._last_grad
            s = self._last_step
            ys = float(torch.dot(y, s))
            if ys > 1e-10 * float(y.norm()) * float(s.norm()):
                self.pairs.append((s, y, 1.0 / ys))
        if self.pairs:
            direction = -self._two_loop(g) * self.lr
        else:
            scale = float(g.abs().max())
            direction = -g * (self.first_step / scale) if scale > 0 else torch.zeros_like(g)
        self.x.add_(direction.view_as(self.x))
        self._last_grad = g.clone()
        self._last_step = direction

    def _two_loop(self, g: Tensor) -> Tensor:
        q = g.clone()
        alphas = []
        for s, y, rho in reversed(self.pairs):
            alpha = rho * float(torch.dot(s, q))
            q.add_(y, alpha=-alpha)
            alphas.append(alpha)
        s, y, rho = self.pairs[-1]
        q.mul_(1.0 / (rho * float(torch.dot(y, y))))  # H0 = (sᵀy / yᵀy) I
        for (s, y, rho), alpha in zip(self.pairs, reversed(alphas)):
            beta = rho * float(torch.dot(y, q))
            q.add_(s, alpha=alpha - beta)
        return q

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
        self._gamma = torch.zeros((), dtype=self.x.dtype, device=self.x.device)  # 0: no pair accepted yet

    @torch.no_grad()
    def step(self, grad: Tensor) -> None:
        """Move ``x`` along the quasi-Newton direction computed from ``grad`` = ∇J(x).

        Never waits for the device: every decision is a ``torch.where`` on 0-d tensors, so a
        step costs no host synchronisation (the two-loop recursion alone would need two per
        pair if its scalars came back as floats). A rejected pair is kept with ρ = 0, which
        makes it a no-op in both loops (it still takes a history slot).
        """
        g = grad.detach().reshape(-1)
        if self._last_grad is not None:
            y = g - self._last_grad
            s = self._last_step
            ys = torch.dot(y, s)
            yy = torch.dot(y, y)
            ok = ys > 1e-10 * yy.sqrt() * s.norm()
            rho = torch.where(ok, 1.0 / torch.where(ok, ys, torch.ones_like(ys)), torch.zeros_like(ys))
            self._gamma = torch.where(ok, ys / torch.where(ok, yy, torch.ones_like(yy)), self._gamma)
            self.pairs.append((s, y, rho))
        scale = g.abs().max()
        gradient_step = g * (-self.first_step / torch.where(scale > 0, scale, torch.ones_like(scale)))
        if self.pairs:
            direction = torch.where(self._gamma > 0, self._two_loop(g).mul_(-self.lr), gradient_step)
        else:
            direction = gradient_step
        self.x.add_(direction.view_as(self.x))
        self._last_grad = g.clone()
        self._last_step = direction

    def _two_loop(self, g: Tensor) -> Tensor:
        q = g.clone()
        alphas = []
        for s, y, rho in reversed(self.pairs):
            alpha = rho * torch.dot(s, q)
            q.addcmul_(y, alpha, value=-1.0)
            alphas.append(alpha)
        q.mul_(self._gamma)  # H0 = (sᵀy / yᵀy) I of the newest accepted pair
        for (s, y, rho), alpha in zip(self.pairs, reversed(alphas)):
            beta = rho * torch.dot(y, q)
            q.addcmul_(s, alpha - beta)
        return q

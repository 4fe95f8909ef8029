"""The iterative FGSM family made to transfer from a substitute to another model: momentum (MI-FGSM, Dong et al.
2018, "Boosting Adversarial Attacks with Momentum"), input diversity (DI-FGSM, Xie et al. 2019, "Improving
Transferability of Adversarial Examples with Input Diversity"), translation invariance (TI-FGSM, Dong et al. 2019,
"Evading Defenses to Transferable Adversarial Examples by Translation-Invariant Attacks"), Nesterov look-ahead
(NI-FGSM, Lin et al. 2020, "Nesterov Accelerated Gradient and Scale Invariance for Adversarial Attacks") and
variance tuning (VMI-FGSM, Wang and He 2021, "Enhancing the Transferability of Adversarial Attacks through Variance
Tuning").

One attack, :class:`TransferFGSM`, has every ingredient as an option, so that a combination (MI-DI-TI-FGSM) is one
constructor call; :class:`MIFGSM` .. :class:`VMIFGSM` only change its defaults. Each step, from the iterate
``x_t`` with momentum ``g_t`` (zero at first) and variance ``v_t`` (zero at first)::

    p      = x_t + alpha * decay * g_t           with nesterov, else x_t
    d      = grad L(T(p))                        T: input diversity with probability diversity_prob, else T(p) = p
    d'     = W * (d + v_t)                       W: Gaussian kernel per channel (kernel_size 1: none)
    v_t+1  = mean_i grad L(T(x_t + r_i)) - d     r_i uniform in the ball of radius variance_beta * eps (N samples)
    g_t+1  = decay * g_t + d' / mean|d'|
    x_t+1  = P(x_t + alpha * s(g_t+1))           s: sign (L-inf) or unit vector (L2); P: the eps ball and the bounds

The random numbers (input diversity, neighbours) are keyed per sample (:class:`~alva.attacks.keyed.KeyedRandom`):
a sample's result does not depend on its batch. The engine checks every iterate for success; a step whose gradient
is not taken at ``x_t`` itself (a look-ahead, an image that input diversity moved) spends one more forward pass on
it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from alva.attacks.engine import GradientAttack, Rows, Run
from alva.attacks.ensemble import logits_and_loss
from alva.attacks.errors import AttackInputError, finite, in_interval, integer_at_least, positive_int
from alva.attacks.keyed import Uniform, generator_uniform
from alva.attacks.norms import Norm, get_norm

__all__ = ["DIFGSM", "MIFGSM", "NIFGSM", "TIFGSM", "VMIFGSM", "TransferFGSM", "TransferRows", "diverse_inputs",
           "gaussian_kernel", "gaussian_weights", "smooth_per_channel"]


class TransferRows(Rows):
    """The per-row state of a search of the family: momentum, variance, steps taken and the keyed numbers."""

    momentum: torch.Tensor
    variance: torch.Tensor
    done: int
    numbers: Callable[[tuple[int, ...]], Uniform]
    count: Callable[[torch.Tensor], None]  # counts one more query for some of the rows (by local index)


def gaussian_weights(size: int, sigmas: float = 3.0) -> torch.Tensor:
    """``size`` weights of a Gaussian summing to 1, spanning ``sigmas`` standard deviations on each side of the
    centre: one side of the kernel of Dong et al. 2019 (15 and 3 on 299-pixel images)."""
    t = torch.linspace(-sigmas, sigmas, size, dtype=torch.float64)
    g = torch.exp(-0.5 * t**2)
    return (g / g.sum()).to(torch.float32)


def gaussian_kernel(size: int, sigmas: float = 3.0) -> torch.Tensor:
    """The ``size`` x ``size`` Gaussian kernel (summing to 1) that :func:`smooth_per_channel` applies."""
    weights = gaussian_weights(size, sigmas)
    return torch.outer(weights, weights)


def _band(size: int, weights: torch.Tensor) -> torch.Tensor:
    """The ``size`` x ``size`` matrix of the zero-padded 1-D convolution with ``weights`` (odd length)."""
    index = torch.arange(size, device=weights.device)
    offset = index[None, :] - index[:, None] + len(weights) // 2
    inside = (offset >= 0) & (offset < len(weights))
    return torch.where(inside, weights[offset.clamp(0, len(weights) - 1)], torch.zeros((), dtype=weights.dtype))


def smooth_per_channel(grad: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``grad`` (N x C x H x W) convolved in each channel apart with the kernel ``outer(weights, weights)``,
    zero-padded to its size: the kernel is separable, so the convolution is two products with banded matrices."""
    weights = weights.to(grad)
    return _band(grad.shape[-2], weights) @ grad @ _band(grad.shape[-1], weights).T


def _resize_matrix(size: int, new: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """Per sample, the ``size`` x ``size`` matrix that shrinks a line of ``size`` pixels to ``new`` of them
    (bilinear, pixel centres aligned, sources clamped to the line) placed from ``start``, zeros elsewhere."""
    n, index = len(new), torch.arange(size, dtype=torch.float64, device=new.device)
    source = ((index[None] - start[:, None] + 0.5) * size / new[:, None] - 0.5).clamp(0, size - 1)
    low = source.floor()
    frac = source - low
    high = (low + 1).clamp(max=size - 1)
    inside = ((index[None] >= start[:, None]) & (index[None] < (start + new)[:, None])).to(torch.float64)
    matrix = torch.zeros(n, size, size, dtype=torch.float64, device=new.device)
    matrix.scatter_add_(2, low.long()[..., None], ((1 - frac) * inside)[..., None])
    matrix.scatter_add_(2, high.long()[..., None], (frac * inside)[..., None])
    return matrix


def diverse_inputs(x: torch.Tensor, u: torch.Tensor, prob: float, resize_rate: float) -> torch.Tensor:
    """Input diversity (Xie et al. 2019), per sample: with probability ``prob`` (where ``u[:, 0] < prob``) the image
    is shrunk (bilinear) to a random size between ``resize_rate`` times its size and its size, and zero-padded back
    to its size at a random place; otherwise it is left as it is. ``u`` holds 4 numbers in [0, 1) per sample
    (apply, size, top, left). Differentiable in ``x``: the shrink and the shift are separable, two products with
    per-sample matrices."""
    moved = (u[:, 0] < prob).nonzero().squeeze(1)
    if len(moved) == 0:
        return x
    h, w = x.shape[-2:]
    scale = resize_rate + (1 - resize_rate) * u[moved, 1].to(torch.float64)
    new_h, new_w = (scale * h).floor().clamp(1, h), (scale * w).floor().clamp(1, w)
    top, left = (u[moved, 2] * (h - new_h + 1)).floor(), (u[moved, 3] * (w - new_w + 1)).floor()
    rows = _resize_matrix(h, new_h, top).to(x.dtype)[:, None]
    columns = _resize_matrix(w, new_w, left).to(x.dtype)[:, None]
    return x.index_put((moved,), rows @ x[moved] @ columns.transpose(-1, -2))


def _mean_abs(t: torch.Tensor) -> torch.Tensor:
    mean = t.abs().reshape(len(t), -1).mean(dim=1).view(-1, *[1] * (t.ndim - 1))
    return torch.where(mean > 0, mean, torch.ones_like(mean))  # a zero gradient stays zero


class TransferFGSM(GradientAttack):
    """Iterative FGSM with the transfer-enhancing options; see the module docstring for the step.

    Args:
        eps: radius of the ball (>= 0), in the units of ``norm``.
        alpha: step size; default ``eps / steps`` (the papers' choice).
        steps: iterations (10 in the papers).
        norm: ``"linf"`` (the papers') or ``"l2"`` (any :class:`~alva.attacks.norms.Norm`).
        decay: momentum decay ``mu`` (MI-FGSM: 1.0; 0: no momentum).
        diversity_prob: probability of the input-diversity transform at each gradient (DI-FGSM: 0.5; 0: none).
        resize_rate: the smallest size of the diversity transform, relative to the image's, in (0, 1].
        kernel_size: side of the Gaussian kernel that smooths the gradient (TI-FGSM: 15 for 299-pixel images;
            odd; 1: no smoothing).
        kernel_sigmas: standard deviations of the Gaussian that the kernel spans on each side of its centre.
        nesterov: take the gradient at the look-ahead point ``x + alpha * decay * g`` (NI-FGSM).
        variance_samples: neighbours N whose mean gradient tunes the next step (VMI-FGSM: 20; 0: none).
        variance_beta: radius of the neighbourhood, in units of eps (VMI-FGSM: 1.5).

    ``loss``, ``target``, ``early_stop``, ``bounds`` and ``seed`` are those of every
    :class:`~alva.attacks.base.Attack`. The model may be an :class:`~alva.attacks.ensemble.EnsembleModel`; in
    its ``"loss"`` mode the gradient is the mean of its members' loss gradients.

    Queries per step: 1, plus 1 with a look-ahead (the iterate's own forward pass) or for each image that input
    diversity moved, plus N; and one forward pass at the last iterate and at the clean point. The result for a
    sample is chosen as PGD's.
    """

    rows_type = TransferRows

    def __init__(self, model: torch.nn.Module, eps: float = 0.3, alpha: float | None = None, steps: int = 10, *,
                 norm: str | Norm = "linf", decay: float = 0.0, diversity_prob: float = 0.0,
                 resize_rate: float = 0.9, kernel_size: int = 1, kernel_sigmas: float = 3.0, nesterov: bool = False,
                 variance_samples: int = 0, variance_beta: float = 1.5, **kwargs) -> None:
        super().__init__(model, **kwargs)
        self.eps = finite("eps", eps)
        self.steps = positive_int("steps", steps)
        self.alpha = finite("alpha", alpha, strict=True) if alpha is not None else self.eps / self.steps
        self.norm = get_norm(norm)
        self.decay = finite("decay", decay)
        self.diversity_prob = in_interval("diversity_prob", diversity_prob, "[0, 1]")
        self.resize_rate = in_interval("resize_rate", resize_rate, "(0, 1]")
        self.kernel_size = positive_int("kernel_size", kernel_size)
        if self.kernel_size % 2 == 0:
            raise AttackInputError(f"kernel_size must be odd, got {kernel_size}")
        self.kernel_sigmas = finite("kernel_sigmas", kernel_sigmas, strict=True)
        self.nesterov = bool(nesterov)
        self.variance_samples = integer_at_least("variance_samples", variance_samples, 0)
        self.variance_beta = finite("variance_beta", variance_beta)
        self.kernel = gaussian_weights(self.kernel_size, self.kernel_sigmas) if self.kernel_size > 1 else None

    @property
    def queries_per_step(self) -> int:
        """1, plus 1 for the iterate's own pass with a look-ahead, plus the neighbours (the iterate's pass where
        input diversity moved an image is counted for that image alone)."""
        return 1 + int(self.nesterov) + self.variance_samples

    def start(self, run: Run, rows: Rows) -> torch.Tensor:
        images = self.diversity_prob > 0 or self.kernel is not None
        if images and rows.x0.ndim != 4:
            raise AttackInputError("input diversity and gradient smoothing need images N x C x H x W, got shape "
                                   f"{tuple(rows.x0.shape)}")
        state = _family_rows(rows)
        state.numbers = lambda stream: run.uniform(state, stream)

        def count(local: torch.Tensor) -> None:
            run.queries[local if state.rows is None else state.rows[local]] += 1

        state.count = count
        self._reset(state)
        return rows.x0

    def _reset(self, rows: TransferRows) -> None:
        rows.momentum = torch.zeros_like(rows.x0)
        rows.variance = torch.zeros_like(rows.x0)
        rows.done = 0

    def _objective(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        return logits_and_loss(self.model, x, lambda logits: self.loss(logits, y, target))

    def _loss_gradient(self, rows: TransferRows, point: torch.Tensor, stream: tuple[int, ...]
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Logits, loss and gradient at ``point`` (through input diversity), and the rows that it moved."""
        x = point.detach().requires_grad_(True)
        seen, moved = x, None
        if self.diversity_prob > 0:
            u = rows.numbers(stream)(4)
            seen, moved = diverse_inputs(x, u, self.diversity_prob, self.resize_rate), u[:, 0] < self.diversity_prob
        logits, loss = self._objective(seen, rows.y, rows.loss_target)
        return logits, loss, torch.autograd.grad(loss.sum(), x)[0], moved

    def _at_iterate(self, rows: TransferRows, logits: torch.Tensor, loss: torch.Tensor, moved: torch.Tensor | None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The logits and loss at the iterate itself, from those of the gradient's pass where it was taken there."""
        with torch.no_grad():
            if self.nesterov:
                return self._objective(rows.x, rows.y, rows.loss_target)
            if moved is None or not moved.any():
                return logits, loss
            local = moved.nonzero().squeeze(1)
            target = None if rows.loss_target is None else rows.loss_target[local]
            own_logits, own_loss = self._objective(rows.x[local], rows.y[local], target)
            rows.count(local)
            return logits.index_put((local,), own_logits), loss.index_put((local,), own_loss)

    def gradient(self, rows: Rows) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        state = _family_rows(rows)
        if not hasattr(state, "momentum"):  # the lean loop of adversarial training (no start): global numbers
            state.numbers = lambda stream: generator_uniform(state.n, None, state.x0.device)
            state.count = lambda local: None
            self._reset(state)
        base = (*state.stream, state.done)
        probe = state.x + (self.alpha * self.decay) * state.momentum if self.nesterov else state.x
        logits, loss, grad, moved = self._loss_gradient(state, probe, (*base, 0))
        logits, loss = self._at_iterate(state, logits.detach(), loss.detach(), moved)
        if self.variance_samples:
            neighbours = torch.zeros_like(grad)
            radius = self.variance_beta * self.eps
            for i in range(1, self.variance_samples + 1):
                offset = self.norm.random_in_ball(state.x, radius, state.numbers((*base, i, 1)))
                neighbours += self._loss_gradient(state, state.x + offset, (*base, i, 0))[2]
            grad, state.variance = grad + state.variance, neighbours / self.variance_samples - grad
        if self.kernel is not None:
            grad = smooth_per_channel(grad, self.kernel)
        return logits, loss, grad

    def step(self, rows: Rows, grad: torch.Tensor, k: int) -> torch.Tensor:
        """The momentum step: ``g = decay * g + grad / mean|grad|``, then an ascent step along ``g``, projected
        onto the eps ball around ``rows.x0`` and the bounds."""
        state = _family_rows(rows)
        state.momentum = state.momentum.mul_(self.decay).add_(grad / _mean_abs(grad))
        state.done = k + 1
        return self.norm.ascend(state.x, state.momentum.clone(), state.x0, self.alpha, self.eps).clamp_(*self.bounds)


def _family_rows(rows: Rows) -> TransferRows:
    if not isinstance(rows, TransferRows):
        raise TypeError(f"the transfer FGSM family searches on TransferRows, got {type(rows).__name__}")
    return rows


class MIFGSM(TransferFGSM):
    """MI-FGSM (Dong et al. 2018): iterative FGSM with momentum, ``decay`` 1.0; any other option of
    :class:`TransferFGSM` combines with it (``MIFGSM(m, diversity_prob=0.5, kernel_size=5)``: MI-DI-TI-FGSM)."""

    def __init__(self, model: torch.nn.Module, eps: float = 0.3, alpha: float | None = None, steps: int = 10, *,
                 decay: float = 1.0, **kwargs) -> None:
        super().__init__(model, eps, alpha, steps, decay=decay, **kwargs)


class DIFGSM(TransferFGSM):
    """DI-FGSM (Xie et al. 2019): iterative FGSM on randomly resized and padded inputs, ``diversity_prob`` 0.5,
    ``resize_rate`` 0.9, no momentum (``decay=1.0``: M-DI-FGSM)."""

    def __init__(self, model: torch.nn.Module, eps: float = 0.3, alpha: float | None = None, steps: int = 10, *,
                 diversity_prob: float = 0.5, **kwargs) -> None:
        super().__init__(model, eps, alpha, steps, diversity_prob=diversity_prob, **kwargs)


class TIFGSM(TransferFGSM):
    """TI-FGSM (Dong et al. 2019): iterative FGSM whose gradient is smoothed by a Gaussian kernel in each
    channel, ``kernel_size`` 15 (the paper's, for 299-pixel images; smaller suits smaller images), no momentum."""

    def __init__(self, model: torch.nn.Module, eps: float = 0.3, alpha: float | None = None, steps: int = 10, *,
                 kernel_size: int = 15, **kwargs) -> None:
        super().__init__(model, eps, alpha, steps, kernel_size=kernel_size, **kwargs)


class NIFGSM(TransferFGSM):
    """NI-FGSM (Lin et al. 2020): MI-FGSM whose gradient is taken at the Nesterov look-ahead point, ``decay``
    1.0."""

    def __init__(self, model: torch.nn.Module, eps: float = 0.3, alpha: float | None = None, steps: int = 10, *,
                 decay: float = 1.0, nesterov: bool = True, **kwargs) -> None:
        super().__init__(model, eps, alpha, steps, decay=decay, nesterov=nesterov, **kwargs)


class VMIFGSM(TransferFGSM):
    """VMI-FGSM (Wang and He 2021): MI-FGSM whose gradient is tuned by the variance of the gradients of
    ``variance_samples`` (20) neighbours within ``variance_beta`` (1.5) times eps, ``decay`` 1.0."""

    def __init__(self, model: torch.nn.Module, eps: float = 0.3, alpha: float | None = None, steps: int = 10, *,
                 decay: float = 1.0, variance_samples: int = 20, **kwargs) -> None:
        super().__init__(model, eps, alpha, steps, decay=decay, variance_samples=variance_samples, **kwargs)

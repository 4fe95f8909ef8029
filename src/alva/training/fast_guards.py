"""Single-step adversarial training that does not overfit catastrophically: parts of the one training loop
(:func:`alva.training.loop.fit`).

FGSM training (Wong, Rice and Kolter 2020) can lose all its robustness within an epoch: the model becomes so
non-linear inside the eps ball that the one-step example no longer approximates the worst case, PGD accuracy
falls to about zero and clean accuracy stays high ("catastrophic overfitting"). Two remedies from the
literature:

- :class:`NFGSM`: de Jorge et al. 2022, "Make Some Noise: Reliable and Efficient Single-Step Adversarial
  Training": a stronger noise (uniform in the ``k eps`` box, ``k = 2``), an FGSM step of ``alpha = eps`` from
  the noisy point, and no projection back onto the eps ball.
- :class:`GradAlign`: Andriushchenko and Flammarion 2020, "Understanding and Improving Fast Adversarial
  Training": FGSM training plus ``lambda * (1 - cos(grad_x J(x), grad_x J(x + eta)))`` with ``eta`` uniform
  in the eps ball, which keeps the loss locally linear; it needs a second-order (double) backward pass.

Neither has a roll-back guard: they exist to make one unnecessary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from alva.attacks.errors import finite
from alva.attacks.norms import Norm
from alva.training.adversarial import Adversarial, adversarial_loss, perturb, uniform_around


def noisy_fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, noise: float, alpha: float, norm: Norm,
               bounds: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """N-FGSM's example: ``x + eta + alpha sign(grad J(x + eta))`` with ``eta`` uniform in the ``noise`` ball,
    clipped to ``bounds`` only (its distance to ``x`` may reach ``noise + alpha``). The gradient step runs
    with the model in eval mode and its weights frozen; the noise comes from torch's global generator."""
    x = x.detach()
    start = uniform_around(x, noise, norm, bounds) if noise > 0 else x
    # One step of size alpha from the noisy point, projected onto the alpha ball around that point: a no-op,
    # so the example is not pulled back towards x.
    return perturb(model, start, y, alpha, alpha, 1, norm, random_start=False, bounds=bounds)


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """The gradient of the summed cross-entropy with respect to the inputs ``x``, one per sample; with
    ``create_graph`` it stays differentiable with respect to the weights. No weight ``.grad`` is touched."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x, create_graph=create_graph)
    return grad


def gradient_misalignment(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: Norm,
                          bounds: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """GradAlign's regulariser without its weight: the mean over the batch of
    ``1 - cos(grad_x J(x), grad_x J(x + eta))``, ``eta`` uniform in the eps ball (torch's global generator),
    differentiable with respect to the weights through the second gradient. Samples whose gradient is exactly
    zero at either point are left out (their cosine is undefined); with none left it is 0."""
    at_x = input_gradient(model, x, y).flatten(1)
    noisy = uniform_around(x, eps, norm, bounds)
    at_noisy = input_gradient(model, noisy, y, create_graph=True).flatten(1)
    keep = (at_x.norm(dim=1) > 0) & (at_noisy.norm(dim=1) > 0)
    if not keep.any():
        return at_noisy.sum() * 0.0
    cos = F.cosine_similarity(at_x[keep], at_noisy[keep], dim=1)
    return (1 - cos).mean()


class NFGSM(Adversarial):
    """de Jorge et al. 2022 (N-FGSM): the cross-entropy at :func:`noisy_fgsm`'s example, with noise uniform
    in the ``noise * eps`` box (default 2) and a step of ``alpha`` (default ``eps``), not projected onto the eps
    ball. Both follow eps during a ramp. The paper pairs it with a cyclic learning rate
    (``TrainSettings(schedule="cyclic")``)."""

    name = "n-fgsm"

    def __init__(self, eps: float = 0.3, noise: float = 2.0, alpha: float | None = None, **kwargs) -> None:
        super().__init__(eps, **kwargs)
        self.noise_ratio = finite("noise", noise)
        self.alpha_ratio = self.step_ratio(alpha, 1.0)

    def __call__(self, model, x, y):
        eps = self.current_eps
        x_adv = noisy_fgsm(model, x, y, self.noise_ratio * eps, self.alpha_ratio * eps, self.norm, self.bounds)
        return adversarial_loss(model, x_adv, y)

    def describe(self):
        return {**super().describe(), "noise_ratio": self.noise_ratio, "alpha_ratio": self.alpha_ratio}


class GradAlign(Adversarial):
    """Andriushchenko and Flammarion 2020: ``J(x_adv) + align_weight * gradient_misalignment`` (see
    :func:`gradient_misalignment`), ``x_adv`` one FGSM step of ``alpha`` (default ``eps``) from ``x``, or from a
    uniform random start with ``random_start`` (FGSM-RS), projected onto the eps ball. The paper's CIFAR-10
    weights grow with eps, 0.2 at 8/255 to 2.0 at 16/255; the default here, 2.0, is for MNIST's larger eps.

    The example is made in eval mode; the regulariser is part of the loss and runs in train mode. It costs
    about three times an FGSM training step (two more gradient passes, one of them differentiated again).
    """

    name = "grad-align"

    def __init__(self, eps: float = 0.3, align_weight: float = 2.0, alpha: float | None = None,
                 random_start: bool = False, **kwargs) -> None:
        super().__init__(eps, **kwargs)
        self.align_weight = finite("align_weight", align_weight)
        self.alpha_ratio = self.step_ratio(alpha, 1.0)
        self.random_start = bool(random_start)

    def __call__(self, model, x, y):
        eps = self.current_eps
        x_adv = perturb(model, x, y, eps, self.alpha_ratio * eps, 1, self.norm, self.random_start,
                        bounds=self.bounds)
        logits = model(x_adv)
        adv_loss = F.cross_entropy(logits, y)
        misalignment = (gradient_misalignment(model, x, y, eps, self.norm, self.bounds) if eps > 0
                        else adv_loss * 0.0)
        loss = adv_loss + self.align_weight * misalignment
        return loss, {"loss": loss.item(), "adv_acc": (logits.argmax(1) == y).float().mean().item(),
                      "misalignment": misalignment.item()}

    def describe(self):
        return {**super().describe(), "align_weight": self.align_weight, "alpha_ratio": self.alpha_ratio,
                "random_start": self.random_start}


FAST_GUARD_OBJECTIVES: dict[str, type[Adversarial]] = {"n-fgsm": NFGSM, "grad-align": GradAlign}

"""Small measuring helpers shared by the attack tests (imported as ``from attack_helpers import ...``)."""

from __future__ import annotations

import math

import torch
from torch import nn

from alva.attacks.minimum_norm import MinimumNormResult

ORDS = {"linf": math.inf, "l2": 2, "l1": 1}


def distance(norm: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample distance between two batches under ``norm``, in double precision."""
    return torch.linalg.vector_norm((a - b).reshape(len(a), -1).double(), ord=ORDS[norm], dim=1)


def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return (predict(model, x) == y).double().mean().item()


def pgd_sweep(model: nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str, radii: list[float], steps: int = 20
              ) -> torch.Tensor:
    """Per sample, the smallest radius of ``radii`` at which PGD under ``norm`` breaks it (inf where none does):
    the minimum-norm estimate a sweep of fixed-radius attacks gives."""
    from alva.attacks import PGD

    smallest = torch.full((len(x),), math.inf)
    for eps in sorted(radii, reverse=True):
        broken = PGD(model, eps=eps, steps=steps, norm=norm, seed=0)(x, y).success
        smallest = torch.where(broken, eps, smallest)
    return smallest


def pgd_sweep_distances(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_values, norm: str = "l2",
                        steps: int = 20) -> torch.Tensor:
    """Per sample, the smallest eps of ``eps_values`` (ascending) at which PGD under ``norm`` succeeds: 0 for a
    sample misclassified clean, inf where no eps does. Each eps attacks only the samples not yet broken."""
    from alva.attacks import PGD

    found = torch.where(predict(model, x) != y, 0.0, math.inf)
    for eps in eps_values:
        open_rows = torch.isinf(found).nonzero().squeeze(1)
        if len(open_rows) == 0:
            break
        result = PGD(model, eps=eps, steps=steps, norm=norm, seed=0)(x[open_rows], y[open_rows])
        found[open_rows[result.success]] = eps
    return found


def median_at_same_success(distances: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """The median of the finite ``distances`` and the median of the same number of smallest ``reference``
    distances (inf where the reference breaks fewer samples): two attacks compared at the same success."""
    broken = distances[torch.isfinite(distances)]
    best = reference.sort().values[:len(broken)]
    return broken.median().item(), best.median().item()


def check_minimum_norm_result(model, x, y, result, target=None):
    """Success agrees with the model, distances are the measured L2 norms, failures return the clean point."""
    assert isinstance(result, MinimumNormResult) and result.norm == "l2"
    pred = predict(model, result.x_adv)
    assert torch.equal(result.success, pred == target if target is not None else pred != y)
    ok = result.success
    torch.testing.assert_close(result.distances[ok].double(), distance("l2", result.x_adv, x)[ok], rtol=1e-5,
                               atol=1e-6)
    assert torch.isinf(result.distances[~ok]).all() and torch.equal(result.x_adv[~ok], x[~ok])
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1

"""Sanity checks for a robustness evaluation: symptoms that the attacks, not the model, are what failed.

After Carlini et al. 2019 ("On Evaluating Adversarial Robustness", Section 5) and the flags of AutoAttack
(Croce and Hein 2020). Each check returns a list of warnings (empty when all is well), written to be read
by someone who did not write the model:

(a) :func:`check_gradients`: the gradient of the loss w.r.t. the input is zero or NaN for many samples
    (gradient masking: a non-differentiable or saturated input path; gradient attacks cannot work).
(b) :func:`check_black_box`: the black-box Square attack broke points that the white-box attacks before it
    (APGD, FAB) did not, more than 0.2% of the points (AutoAttack's threshold): their gradients mislead them.
(c) :func:`check_eps_growth`: accuracy does not fall as eps grows (it rises somewhere, or stays flat
    up to an unbounded eps).
(d) :func:`check_unbounded`: an unbounded attack (eps covering the whole pixel range) leaves accuracy
    well above 0%: any image is allowed there, so a working attack must succeed.
(e) :func:`check_randomness`: the model's output changes between two identical calls (dropout left on,
    noise: a randomised defence, which needs expectation over transformation and repeated evaluation).

:func:`run_sanity_checks` runs them all on a few samples (by default 200), sharing the eps sweep of (c)
and (d); the white-box attack of those two is APGD with the margin loss (insensitive to the scale of the
logits), no random start (a random point of a large ball breaks most models without any gradient) and 20
steps.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

from alva.attacks.apgd import APGD
from alva.attacks.base import attack_mode
from alva.attacks.losses import margin
from alva.attacks.norms import get_norm

__all__ = ["BLACK_BOX", "SanityWarning", "check_black_box", "check_eps_growth", "check_gradients",
           "check_randomness", "check_unbounded", "emit", "eps_sweep", "run_sanity_checks", "unbounded_eps"]

BLACK_BOX = ("square",)


class SanityWarning(UserWarning):
    """A symptom that a robustness evaluation is unreliable."""


def emit(messages: Sequence[str]) -> None:
    """Issue each message as a :class:`SanityWarning`."""
    for message in messages:
        warnings.warn(message, SanityWarning, stacklevel=3)


def _pct(part: float, whole: float, digits: int = 1) -> str:
    return f"{100 * part / max(whole, 1e-12):.{digits}f}%"


def check_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, max_zero_fraction: float = 0.05
                    ) -> list[str]:
    """(a) Gradients of the cross-entropy and of the margin w.r.t. the input at the clean points.

    A sample counts as masked when both gradients are exactly zero, or when either has a NaN or infinite
    entry. (A zero cross-entropy gradient alone is a saturated softmax, which the DLR and margin losses of
    the strong evaluation do not mind.)
    """
    with attack_mode(model):
        xg = x.detach().clone().requires_grad_(True)
        logits = model(xg)
        ce = nn.functional.cross_entropy(logits, y, reduction="none")
        (g_ce,) = torch.autograd.grad(ce.sum(), xg, retain_graph=True)
        (g_margin,) = torch.autograd.grad(margin(logits, y, False).sum(), xg)
    n = len(x)
    flat_ce, flat_margin = g_ce.reshape(n, -1), g_margin.reshape(n, -1)
    bad = ~torch.isfinite(flat_ce).all(1) | ~torch.isfinite(flat_margin).all(1)
    zero = ~bad & (flat_ce == 0).all(1) & (flat_margin == 0).all(1)
    out = []
    if bad.any():
        out.append(f"gradient masking: the input gradient of the loss is NaN or infinite for {int(bad.sum())} of "
                   f"{n} samples ({_pct(bad.sum().item(), n)}); gradient attacks cannot work on this model, so its "
                   "robust accuracy is not a lower bound on anything: look for a non-differentiable or unstable "
                   "operation in the model")
    if zero.float().mean().item() > max_zero_fraction:
        out.append(f"gradient masking: the input gradient of the loss is exactly zero for {int(zero.sum())} of {n} "
                   f"samples ({_pct(zero.sum().item(), n)}); gradient attacks see a flat loss, so the robust "
                   "accuracy is likely overestimated: attack a differentiable stand-in (BPDA) or rely on "
                   "black-box attacks with many queries")
    return out


def check_black_box(table: Sequence[dict], n: int, *, tolerance: float = 0.002) -> list[str]:
    """(b) From a strong evaluation's table (rows with ``attack`` and ``broken``, in the order run): the points
    that a black-box attack broke after white-box ones failed on them, when they are more than ``tolerance``
    of the ``n`` points (AutoAttack's flag: 0.2%, so 3 of 1000 points)."""
    out = []
    for i, row in enumerate(table):
        if row["attack"] not in BLACK_BOX:
            continue
        before = [r["attack"] for r in table[:i] if r["attack"] not in (*BLACK_BOX, "clean")]
        if not before or row["broken"] <= tolerance * n:
            continue
        out.append(f"black-box beats white-box: {row['attack']} broke {row['broken']} of {n} points "
                   f"({_pct(row['broken'], n, 2)}, above the {_pct(tolerance, 1, 2)} that AutoAttack tolerates) that "
                   f"{', '.join(before)} did not; a score-based attack should not beat gradient attacks, so their "
                   "gradients are misleading (gradient masking) and the robust accuracy may be far too high")
    return out


def unbounded_eps(x: torch.Tensor, norm: str, bounds: tuple[float, float] = (0.0, 1.0)) -> float:
    """The radius that allows every image in the bounds: the pixel range (L-inf), the box's diagonal (L2) or the
    box's L1 diameter (L1)."""
    width, d = bounds[1] - bounds[0], x[0].numel()
    return {"linf": width, "l1": width * d}.get(get_norm(norm).name, width * d**0.5)


def eps_sweep(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_values: Sequence[float], norm: str = "linf",
              *, steps: int = 20, seed: int = 0, bounds: tuple[float, float] = (0.0, 1.0)) -> list[dict]:
    """Accuracy under APGD (margin loss, no random start, ``steps`` steps) at each eps; eps 0 is the clean
    accuracy."""
    points = []
    for eps in eps_values:
        if eps == 0:
            with attack_mode(model), torch.no_grad():
                acc = (model(x).argmax(1) == y).float().mean().item()
        else:
            res = APGD(model, eps=float(eps), steps=steps, norm=norm, loss="margin", random_start=False,
                       early_stop=True, seed=seed, bounds=bounds)(x, y)
            acc = (~res.success).float().mean().item()
        points.append({"eps": float(eps), "acc": acc})
    return points


def _default_grid(eps: float, top: float) -> list[float]:
    return sorted({0.0, *(min(f * eps, top) for f in (0.25, 0.5, 1.0, 2.0, 4.0) if f * eps > 0), top})


def check_eps_growth(model: nn.Module | None, x: torch.Tensor | None, y: torch.Tensor | None, eps: float,
                     norm: str = "linf", *, curve: list[dict] | None = None, tolerance: float = 0.03,
                     steps: int = 20, seed: int = 0, bounds: tuple[float, float] = (0.0, 1.0)) -> list[str]:
    """(c) Accuracy at eps 0, eps/4 ... 4 eps and the unbounded eps (or the given ``curve``) must fall: warn
    where it rises by more than ``tolerance`` from one eps to a larger one, or where it stays within
    ``tolerance`` of the clean accuracy all the way to the largest eps."""
    if curve is None:
        if model is None or x is None or y is None:
            raise ValueError("check_eps_growth needs model, x and y, or the curve")
        curve = eps_sweep(model, x, y, _default_grid(eps, unbounded_eps(x, norm, bounds)), norm, steps=steps,
                          seed=seed, bounds=bounds)
    points = sorted(curve, key=lambda p: p["eps"])
    out = []
    for a, b in zip(points[:-1], points[1:], strict=True):
        if b["acc"] > a["acc"] + tolerance:
            out.append(f"accuracy rises with eps: {a['acc']:.3f} at eps={a['eps']:.4g} but {b['acc']:.3f} at "
                       f"eps={b['eps']:.4g}; a stronger threat model cannot leave the model more accurate, so the "
                       "attack is failing (gradient masking or too few steps)")
    first, last = points[0], points[-1]
    if len(points) > 1 and first["acc"] > tolerance and last["acc"] >= first["acc"] - tolerance:
        out.append(f"accuracy does not fall as eps grows: {first['acc']:.3f} at eps={first['eps']:.4g} and still "
                   f"{last['acc']:.3f} at eps={last['eps']:.4g}; the attack is not working on this model")
    return out


def check_unbounded(model: nn.Module | None, x: torch.Tensor | None, y: torch.Tensor | None, norm: str = "linf", *,
                    acc: float | None = None, tolerance: float = 0.02, steps: int = 20, seed: int = 0,
                    bounds: tuple[float, float] = (0.0, 1.0)) -> list[str]:
    """(d) Accuracy under an attack with an unbounded eps (or the given ``acc``) must be near 0."""
    top = unbounded_eps(x, norm, bounds) if x is not None else float("nan")
    if acc is None:
        if model is None or x is None or y is None:
            raise ValueError("check_unbounded needs model, x and y, or the accuracy")
        acc = eps_sweep(model, x, y, [top], norm, steps=steps, seed=seed, bounds=bounds)[0]["acc"]
    if acc <= tolerance:
        return []
    return [f"unbounded attack fails: with eps={top:.4g} ({norm}, any image in the bounds allowed) accuracy is "
            f"still {acc:.3f}, where a working attack reaches 0; the attack does not work on this model, so "
            "the robust accuracy at smaller eps means little"]


def check_randomness(model: nn.Module, x: torch.Tensor, *, rtol: float = 1e-5, atol: float = 1e-6) -> list[str]:
    """(e) Two identical calls in eval mode must give the same logits."""
    with attack_mode(model), torch.no_grad():
        first, second = model(x), model(x)
    if torch.allclose(first, second, rtol=rtol, atol=atol, equal_nan=True):
        return []
    diff = (first - second).abs().nan_to_num(float("inf")).amax().item()
    flips = (first.argmax(1) != second.argmax(1)).sum().item()
    return [f"randomness: two identical calls of the model (in eval mode) differ by up to {diff:.3g} in the logits "
            f"and in the predicted class of {flips} of {len(x)} samples; the model is randomised (dropout or "
            "noise left on), so a single attack run measures luck: average gradients over the randomness (EOT) "
            "and evaluate repeatedly"]


def run_sanity_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "linf", *,
                      table: Sequence[dict] | None = None, n_total: int | None = None, n: int = 200,
                      steps: int = 20, seed: int = 0, bounds: tuple[float, float] = (0.0, 1.0),
                      device: str | torch.device = "cpu", warn: bool = True, randomised: bool = False) -> list[str]:
    """All checks on the first ``n`` samples; (b) needs the ``table`` of a strong evaluation on ``n_total``
    samples. ``randomised``: the model is known to be random (the ``rand`` version), so (e) is skipped.
    Returns the warnings (and issues them as :class:`SanityWarning` if ``warn``)."""
    x, y = x[:n].to(device), y[:n].to(device)
    out = [] if randomised else check_randomness(model, x)
    out += check_gradients(model, x, y)
    if table is not None:
        out += check_black_box(table, n_total if n_total is not None else len(x))
    top = unbounded_eps(x, norm, bounds)
    curve = eps_sweep(model, x, y, _default_grid(eps, top), norm, steps=steps, seed=seed, bounds=bounds)
    out += check_eps_growth(None, None, None, eps, norm, curve=curve)
    out += check_unbounded(None, x, None, norm, acc=curve[-1]["acc"])
    if warn:
        emit(out)
    return out

"""Training a substitute of a target classifier for transfer attacks (Papernot et al. 2017, "Practical Black-Box
Attacks against Machine Learning").

A substitute is trained either on the same data as the target (``mode="same-data"``: no query to the target) or
on images labelled by querying the target (``mode="query-labels"``: one query per image, never more than
``query_budget``, counted by :class:`~alva.attacks.transfer.QueryCounter`; optional Jacobian-based augmentation
rounds as in Papernot et al.). :class:`~alva.attacks.transfer.TransferAttack` then attacks it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from alva.attacks.base import attack_mode
from alva.attacks.transfer import QueryCounter
from alva.data import fixed_subset
from alva.models import build, model_io
from alva.training.loop import TrainSettings, fit

__all__ = ["MODES", "substitute_classes", "substitute_data", "train_substitute"]

MODES = ("same-data", "query-labels")


def _label(counter: QueryCounter, x: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, int]:
    """The target's labels of ``x``, one query per image, and its number of outputs."""
    with torch.no_grad():
        logits = [counter(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    return torch.cat([z.argmax(1) for z in logits]), int(logits[0].shape[1])


def _jacobian_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lam: float,
                   bounds: tuple[float, float]) -> torch.Tensor:
    """Papernot et al. 2017: ``x + lam * sign(d F_y(x) / dx)`` for the substitute F and the oracle label y."""
    with attack_mode(model):
        xg = x.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(xg).gather(1, y[:, None]).sum(), xg)
    return (x + lam * grad.sign()).clamp(*bounds).detach()


def substitute_classes(target: nn.Module | None, y: torch.Tensor | None = None) -> int | None:
    """The number of classes a substitute predicts, without querying the target: the target's outputs as its
    card says, else one more than the largest label of ``y``; None when neither tells."""
    known = model_io(target).num_classes if target is not None else None
    if known:
        return int(known)
    return int(y.max()) + 1 if y is not None and len(y) else None


def substitute_data(x: torch.Tensor, y: torch.Tensor, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The images a substitute trained with ``seed`` learns from (or has labelled): the fixed stratified subset of
    ``size`` of them for ``seed`` (:func:`alva.data.fixed_subset`), in an order drawn from ``seed``."""
    xs, ys = fixed_subset(x, y, min(size, len(x)), seed=seed)
    order = torch.randperm(len(xs), generator=torch.Generator().manual_seed(seed))  # fixed_subset sorts by index
    return xs[order], ys[order]


def train_substitute(target: nn.Module | None, data: tuple[torch.Tensor, torch.Tensor] | torch.Tensor, *,
                     mode: str = "same-data", query_budget: int | None = None, architecture: str = "mlp",
                     num_classes: int | None = None, settings=None, jacobian_rounds: int = 0, lam: float = 0.1,
                     bounds: tuple[float, float] = (0.0, 1.0), batch_size: int = 500, seed: int = 0,
                     out: str | Path | None = None, progress: bool = False, device: str | torch.device = "cpu"
                     ) -> tuple[nn.Module, int]:
    """Train a substitute of ``target``; returns ``(substitute, queries)``, the target queries spent.

    mode ``"same-data"``: train on ``data = (x, y)`` with its own labels; ``target`` may be None; 0 queries.
    mode ``"query-labels"``: label images of ``data`` (``x`` or ``(x, y)``; ``y`` is ignored) by querying
    ``target``, at most ``query_budget`` images in all. Without Jacobian augmentation the first
    ``query_budget`` images are labelled (one query each). With ``jacobian_rounds = r > 0`` the first
    ``budget // 2**r`` images seed the set, and each round trains the substitute, adds
    ``x + lam * sign(grad F_label(x))`` for the set so far (truncated to the budget left) and labels the new
    points with the target (Papernot et al. 2017, Algorithm 1).

    ``architecture`` is a name of :func:`alva.models.create` or the user's ``FILE.py:FUNCTION`` (see
    :func:`alva.models.build`), built for the images' shape with ``num_classes`` outputs (default: the target's
    outputs, else one more than the largest label). Single-channel images get the MNIST input statistics of
    :func:`alva.models.create`, others none.

    ``settings`` is a :class:`~alva.training.TrainSettings` (default: 2 epochs, batch 128, Adam 1e-3, ``seed``);
    training goes through :func:`alva.training.loop.fit`. ``out`` keeps the last round's checkpoint and metrics.
    """
    if mode not in MODES:
        raise ValueError(f"unknown substitute mode {mode!r}; choose one of {MODES}")
    settings = settings or TrainSettings(epochs=2, batch_size=128, lr=1e-3, seed=seed)
    torch.manual_seed(seed)
    x = data[0] if isinstance(data, (tuple, list)) else data
    if x.ndim != 4:
        raise ValueError(f"a substitute trains on images N x C x H x W, got shape {tuple(x.shape)}")
    in_shape = tuple(int(d) for d in x.shape[1:])
    paired = isinstance(data, (tuple, list)) and len(data) == 2
    classes = num_classes or substitute_classes(target, data[1] if paired and mode == "same-data" else None)
    # Drawn before either mode's training, so the query-labels rounds start from the random state after it.
    model = build(architecture, in_shape=in_shape, num_classes=classes) if classes else None
    if mode == "same-data":
        if not paired or model is None:
            raise ValueError("mode 'same-data' needs data = (x, y)")
        fit(model, (x, data[1]), settings, out=out, progress=progress, device=device)
        return model, 0

    if target is None:
        raise ValueError("mode 'query-labels' needs the target model to query")
    if query_budget is None or isinstance(query_budget, bool) or int(query_budget) != query_budget \
            or query_budget < 1:
        raise ValueError(f"mode 'query-labels' needs query_budget, an integer >= 1, got {query_budget!r}")
    if jacobian_rounds < 0:
        raise ValueError(f"jacobian_rounds must be >= 0, got {jacobian_rounds}")
    counter = QueryCounter(target, query_budget)
    with attack_mode(target):
        n0 = min(len(x), max(1, query_budget // 2 ** jacobian_rounds))
        xs = x[:n0].to(device)
        ys, outputs = _label(counter, xs, batch_size)
        classes = classes or outputs
        for r in range(jacobian_rounds + 1):
            substitute = build(architecture, in_shape=in_shape, num_classes=classes)
            last = r == jacobian_rounds or counter.left == 0
            fit(substitute, (xs, ys), settings, out=out if last else None, progress=progress, device=device)
            if last:
                break
            new = _jacobian_step(substitute, xs[:counter.left], ys[:counter.left], lam, bounds)
            xs, ys = torch.cat([xs, new]), torch.cat([ys, _label(counter, new, batch_size)[0]])
    return substitute, counter.count

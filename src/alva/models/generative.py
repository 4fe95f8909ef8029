"""The generative-model interface of ALVA (Adversarial Latent Vector Adjustment).

A generator ``G`` maps latent vectors to images that a classifier takes directly: ``C(G(z))``.
``G.get_noise(n)`` draws ``n`` latent vectors of the generator's own shape; it works on the class
(``MyGenerator.get_noise(100)``) and on an instance. A conditional generator also takes class labels,
``G(z, y)``, and draws them with ``G.get_labels(n)``.

To plug in your own generator, subclass and set ``latent_shape`` (and ``num_classes``)::

    class MyGenerator(alva.GenerativeModel):
        latent_shape = (64,)

        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(64, 784), nn.Sigmoid())

        def forward(self, z):
            return self.net(z).view(-1, 1, 28, 28)

    G = MyGenerator()
    assert alva.is_generative_model(G)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
from torch import nn


class class_or_instance_method:
    """A method that receives the class when called on the class and the instance when called on one."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.__doc__ = fn.__doc__

    def __get__(self, instance: Any, owner: type) -> Callable[..., Any]:
        bound_to = owner if instance is None else instance
        return lambda *args, **kwargs: self.fn(bound_to, *args, **kwargs)


def _generator_for(seed: int | None, generator: torch.Generator | None, device) -> torch.Generator | None:
    if generator is not None and seed is not None:
        raise ValueError("give seed or generator, not both")
    if seed is not None:
        return torch.Generator(device=device or "cpu").manual_seed(seed)
    return generator


def _device_of(owner: Any, device) -> torch.device:
    if device is not None:
        return torch.device(device)
    if isinstance(owner, nn.Module):
        param = next(owner.parameters(), None)
        if param is not None:
            return param.device
    return torch.device("cpu")


class GenerativeModel(nn.Module):
    """An unconditional generator: ``G(z)`` for ``z = G.get_noise(n)`` gives ``n`` images in [0, 1].

    A subclass defines ``forward(z)``; a conditional one (:class:`ConditionalGenerativeModel`) ``forward(z, y)``.
    ``card`` is the card a stored generator was loaded with (set by the loaders and trainers),
    ``train_time_s`` the seconds its training took (set by the trainers).
    """

    latent_shape: tuple[int, ...] = (100,)
    card: dict[str, Any]
    train_time_s: float

    @class_or_instance_method
    def get_noise(owner, n: int, *, seed: int | None = None, generator: torch.Generator | None = None,
                  device: str | torch.device | None = None) -> torch.Tensor:
        """``n`` latent vectors, standard normal, of shape ``(n, *latent_shape)``; ``seed`` makes them repeat."""
        if int(n) != n or n < 0:
            raise ValueError(f"n must be a whole number >= 0, got {n}")
        device = _device_of(owner, device)
        return torch.randn((int(n), *owner.latent_shape), generator=_generator_for(seed, generator, device),
                           device=device)


class ConditionalGenerativeModel(GenerativeModel):
    """A conditional generator: ``G(z, y)`` gives images of class ``y``."""

    num_classes: int = 10

    @class_or_instance_method
    def get_labels(owner, n: int, *, seed: int | None = None, generator: torch.Generator | None = None,
                   device: str | torch.device | None = None) -> torch.Tensor:
        """``n`` class labels drawn uniformly from ``range(num_classes)``."""
        device = _device_of(owner, device)
        return torch.randint(0, owner.num_classes, (int(n),), generator=_generator_for(seed, generator, device),
                             device=device)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def is_conditional(G: Any) -> bool:
    return isinstance(G, ConditionalGenerativeModel) or callable(getattr(G, "get_labels", None))


def class_count(G: Any) -> int:
    """The number of classes ``y`` of a conditional generator (its ``num_classes``)."""
    return int(G.num_classes)


def _given(seed: int | None, generator: torch.Generator | None, device: str | torch.device | None
           ) -> dict[str, Any]:
    options = {"seed": seed, "generator": generator, "device": device}
    return {name: value for name, value in options.items() if value is not None}


def draw_noise(G: Any, n: int, *, seed: int | None = None, generator: torch.Generator | None = None,
               device: str | torch.device | None = None) -> torch.Tensor:
    """``G.get_noise(n, ...)`` of any generative model (a :class:`GenerativeModel` or an object with that
    method), passing only the options given."""
    return cast(torch.Tensor, G.get_noise(n, **_given(seed, generator, device)))


def draw_labels(G: Any, n: int, *, seed: int | None = None, generator: torch.Generator | None = None,
                device: str | torch.device | None = None) -> torch.Tensor:
    """``G.get_labels(n, ...)`` of any conditional generative model, passing only the options given."""
    return cast(torch.Tensor, G.get_labels(n, **_given(seed, generator, device)))


def generative_model_problems(G: Any, *, n: int = 4) -> list[str]:
    """What keeps ``G`` from being a usable generative model; empty when it is one.

    Checks: ``get_noise`` exists and returns ``n`` latent vectors; ``G(z)`` (``G(z, y)`` for a conditional
    model) runs and returns ``n`` finite images ``N x C x H x W`` in [0, 1]; the images depend on ``z``
    (and on ``y``).
    """
    if not callable(getattr(G, "get_noise", None)):
        return ["no get_noise(n): it must return n latent vectors of the generator's shape"]
    conditional = is_conditional(G)
    try:
        z = G.get_noise(n, seed=0)
        z2 = G.get_noise(n, seed=1)
    except Exception as err:  # a user's generator may fail in any way; say how
        return [f"get_noise(n, seed=...) failed: {type(err).__name__}: {err}"]
    if not isinstance(z, torch.Tensor) or len(z) != n:
        return [f"get_noise({n}) must return a tensor of {n} latent vectors, got {_describe(z)}"]
    labels = None
    if conditional:
        try:
            labels = G.get_labels(n, seed=0)
        except Exception as err:
            return [f"get_labels(n) failed: {type(err).__name__}: {err}"]
    was_training = G.training if isinstance(G, nn.Module) else None
    if isinstance(G, nn.Module):
        G.eval()
    try:
        with torch.no_grad():
            x = G(z, labels) if conditional else G(z)
            x2 = G(z2, labels) if conditional else G(z2)
            x3 = G(z, (labels + 1) % G.num_classes) if labels is not None else None
    except Exception as err:
        call = "G(z, y)" if conditional else "G(z)"
        return [f"{call} failed: {type(err).__name__}: {err}"]
    finally:
        if was_training is not None:
            G.train(was_training)
    problems = []
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or len(x) != n:
        return [f"output must be images N x C x H x W with N = {n}, got {_describe(x)}"]
    if not x.is_floating_point():
        problems.append(f"output must be floating point, got {x.dtype}")
    elif not torch.isfinite(x).all():
        problems.append("output contains NaN or infinite values")
    elif x.min() < 0 or x.max() > 1:
        problems.append(f"output must be in [0, 1] (a classifier takes it directly), got values in "
                        f"[{x.min().item():.3g}, {x.max().item():.3g}]")
    if torch.equal(x, x2):
        problems.append("output does not depend on z: two different latent batches give the same images")
    if x3 is not None and torch.equal(x, x3):
        problems.append("output does not depend on the class label y")
    return problems


def is_generative_model(G: Any, *, explain: bool = False) -> bool | tuple[bool, list[str]]:
    """True when ``G`` is a usable (conditional) generative model; with ``explain=True`` also the list of
    what is missing or wrong, as ``(ok, problems)``."""
    problems = generative_model_problems(G)
    return (not problems, problems) if explain else not problems


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__

"""The networks of fake-class training: the ``2K``-output network built from a ``K``-class one, the reference
network of metric 6 (trained once, cached with its card), and the card of each round's trained network."""

from __future__ import annotations

import copy
import inspect
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from alva.evaluation.accuracy import accuracy
from alva.models import zoo
from alva.models.cards import build_from_card
from alva.models.factory import import_factory
from alva.models.loading import probe
from alva.training.fakeclass.settings import PRETRAIN, REFERENCE, FakeClassSettings, round_seed
from alva.training.loop import TrainSettings, fit

FAKE_BIAS = -10.0  # bias of the fresh fake-class outputs: their probability starts near 0 (about e^-10 of the top)


def _last_linear(model: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    last = None
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                last = (parent, name, child)
    if last is None:
        raise ValueError("the model has no nn.Linear layer to give fake-class outputs")
    return last


def expand_fake_classes(model: nn.Module, num_classes: int, *, fake_bias: float = FAKE_BIAS) -> nn.Module:
    """A copy of the ``K``-class ``model`` with ``2K`` outputs: the last linear layer keeps its ``K`` rows
    (the real classes) and gets ``K`` fresh rows for the fake classes, with zero weights and bias
    ``fake_bias``, so that the real classes' predictions and probabilities on any input stay as they were
    (up to a factor ``1 + K e^(fake_bias - max logit)``)."""
    model = copy.deepcopy(model)
    parent, name, last = _last_linear(model)
    if last.out_features != num_classes:
        raise ValueError(f"the last linear layer has {last.out_features} outputs, not K={num_classes}")
    new = nn.Linear(last.in_features, 2 * num_classes, device=last.weight.device, dtype=last.weight.dtype)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:num_classes] = last.weight
        new.bias.fill_(fake_bias)
        new.bias[:num_classes] = last.bias if last.bias is not None else 0.0
    setattr(parent, name, new)
    if hasattr(model, "spec"):
        wrapped = cast(Any, model)
        wrapped.spec = with_outputs(wrapped.spec, 2 * num_classes)
    if hasattr(model, "card"):
        del model.card
    return model


def takes_num_classes(factory: str) -> bool:
    """Whether the user's function ``factory`` takes a ``num_classes`` keyword (so a card can ask for outputs)."""
    parameters = inspect.signature(import_factory(factory, from_card=True)).parameters.values()
    return any(p.name == "num_classes" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def with_outputs(spec: dict[str, Any], outputs: int) -> dict[str, Any]:
    """``spec`` for ``outputs`` outputs; for the user's function, its ``num_classes`` keyword when it takes one
    (the card then rebuilds the network with as many outputs; without it the card cannot, and nothing is saved)."""
    spec = {**spec, "num_classes": outputs}
    if "factory" in spec and takes_num_classes(spec["factory"]):
        spec["kwargs"] = {**(spec.get("kwargs") or {}), "num_classes": outputs}
    return spec


def rebuilds(model: nn.Module) -> bool:
    """Whether ``model``'s card rebuilds it: an alva architecture, or a factory told its number of outputs."""
    spec = getattr(model, "spec", None)
    if spec is None:
        return False
    return "factory" not in spec or (spec.get("kwargs") or {}).get("num_classes") == spec.get("num_classes")


def _like(spec_of: nn.Module, num_classes: int) -> nn.Module:
    """A fresh network built as ``spec_of``'s card says (an alva architecture or the user's factory), with its
    normalisation and ``num_classes`` outputs; a factory network of half as many outputs gets the fake classes
    appended (:func:`expand_fake_classes`)."""
    card = zoo.architecture_card(spec_of)
    if "factory" not in card:
        return build_from_card({**card, "num_classes": num_classes}, "the fake-class network")
    if takes_num_classes(card["factory"]):
        card = with_outputs(card, num_classes)
    model = build_from_card(card, "the fake-class network")
    outputs = probe(model, tuple(card["in_shape"]))
    if outputs == num_classes:
        return model
    if 2 * outputs == num_classes:
        return expand_fake_classes(model, outputs)
    raise ValueError(f"the network of {card['factory']} has {outputs} outputs, neither {num_classes} nor "
                     f"{num_classes // 2}")


def start_model(model_or_name: nn.Module | str, settings: FakeClassSettings, shape: tuple[int, ...],
                device: str | torch.device) -> nn.Module:
    """The network of round 0 before any weights are loaded or trained: 2K outputs."""
    k = settings.num_classes
    model = zoo.load(model_or_name, device=device) if isinstance(model_or_name, (str, Path)) \
        else copy.deepcopy(model_or_name).to(device)
    if settings.from_scratch:
        if not hasattr(model, "spec"):
            raise ValueError("from_scratch needs a model made by alva.models.create or loaded from the zoo")
        torch.manual_seed(round_seed(settings.seed, 0, PRETRAIN))
        return _like(model, 2 * k).to(device)
    outputs = probe(model, shape)
    if outputs == 2 * k:
        return model
    if outputs != k:
        raise ValueError(f"the model has {outputs} outputs: expected K={k} (expanded to 2K) or 2K={2 * k}")
    return expand_fake_classes(model, k)


def reference_network(like: nn.Module, settings: FakeClassSettings, train: tuple[torch.Tensor, torch.Tensor],
                      test: tuple[torch.Tensor, torch.Tensor], folder: Path, *, device, progress: bool,
                      log) -> nn.Module:
    """Metric 6's standard classifier, built like ``like`` and trained on ``train`` (the other half); cached in
    ``folder`` with a card that says how it was made, and reused while that card matches."""
    s = settings
    spec = getattr(like, "spec", {})
    key = {**asdict(s.reference), "seed": s.seed, "train_images": len(train[0]),
           "architecture": spec.get("architecture"), **({"factory": spec["factory"]} if "factory" in spec else {})}
    path = folder / "model.safetensors"
    if path.exists() and zoo.card(path).get("fakeclass_reference") == key:
        return zoo.load(path, device=device)
    if not hasattr(like, "spec"):
        raise ValueError("the reference network is built like the trained one: it must be an alva model")
    torch.manual_seed(round_seed(s.seed, 0, REFERENCE))
    model = _like(like, s.reference.outputs)
    log(f"training the reference network on {len(train[0])} images of the other half")
    fit(model, train, TrainSettings(epochs=s.reference.epochs, lr=s.reference.lr, batch_size=s.batch_size,
                                    seed=round_seed(s.seed, 0, REFERENCE)),
        device=device, progress=progress)
    model.eval()
    zoo.save(model, {**zoo.architecture_card(model), "fakeclass_reference": key,
                     "clean_test_accuracy": accuracy(model, *test),
                     "note": "reference network of fake-class training (metric 6), other half of the training images"},
             path)
    return model


def save_trained(model: nn.Module, settings: FakeClassSettings, rounds: int, path: Path) -> None:
    """Write the network after ``rounds`` trained rounds with its card (only for a model whose card rebuilds it:
    an alva architecture, or the user's function that takes ``num_classes``)."""
    if not rebuilds(model):
        return
    k = settings.num_classes
    card: dict[str, Any] = {**zoo.architecture_card(model), "fakeclass_rounds": rounds,
                            "fake_classes": f"outputs {k}..{2 * k - 1} are the fake classes of outputs 0..{k - 1}"}
    zoo.save(model, card, path)

"""Fake-class adversarial training (issue 4; the users' plan, seed 001): a classifier with ``K`` real and
``K`` fake classes learns to put the sparse confident images generated against it into fake classes.

Rounds (round ``r`` starts from the network ``N_r``; ``N_0`` is the start network):

1. *generate* against ``N_r`` with :class:`~alva.attacks.sparse.SparseConfident` for every real class
   ``k``: ``per_class`` images to train on and ``test_per_class`` held-out ones (never trained on), and
   ``de.per_class`` held-out images by a different process, black-box differential evolution
   (:class:`~alva.attacks.differential_evolution.DifferentialEvolution`). A generated image *succeeds* when
   ``N_r`` gives class ``k`` a probability ``>= confidence`` with at most ``max_pixels`` non-zero pixels;
   only successful images are kept. They are labelled with the fake class ``K + k``.
2. *stop* when the generation no longer succeeds (success rate ``< threshold`` with the full step budget:
   ``N_r`` is deemed robust) or at the round limit (``r == rounds``); this last generation is metric 8.
3. *train* with :func:`alva.training.loop.fit` on the real images and every successful generated training
   image so far (the generated ones repeated to make up at least ``min_fake_share`` of the data), giving
   ``N_{r+1}``; after every epoch the eleven metrics are measured and logged.

The metrics, numbered as in the plan (keys ``m00`` ... ``m10`` of ``metrics.jsonl`` and ``rounds.json``):

* ``m00_generation``: success rate, target probability, L0 / L1 sparsity and steps of the round's generation
  (:func:`~alva.attacks.sparse.sparse_summary`), overall and per class.
* ``m01_ood``: a proxy, since no agreed OOD metric exists: mean L2 distance of the successful generated
  images to their nearest real training image (on a fixed pool of ``nn_pool_size``), the cosine distance to
  the most similar one and whether that one is of class ``k``, each against the same for real test images;
  and how a separate standard classifier (the reference network of metric 6) sees them (its probability of
  ``k``, how often its prediction is ``k``). Image grids ``round_NNN.png`` show the generated images with
  their most similar training image, for inspection.
* ``m02_current_batch`` (this round's training images), ``m03_past_train`` (all generated training images
  so far, a sample of ``sample`` per epoch when there are more), ``m04_test_current`` (held-out images of
  this round, generated on the most recent network), ``m05_test_past`` (held-out images of earlier rounds,
  generated on past networks), ``m06_other_network`` (the same process on a reference network trained on
  the disjoint other half of the MNIST training images), ``m07_other_process`` (differential evolution on
  the networks of the rounds and on the reference network; also its generation success). Each of these
  gives, overall and per class ``k``: ``fake_prob`` (probability of the fake class ``K + k``), ``loss``
  (cross-entropy against ``K + k``), ``detected`` (accuracy as the fake class), ``any_fake`` (predicted as
  some fake class), ``target_prob`` (probability of ``k``) and ``fooled`` (``target_prob >= confidence``).
* ``m08_final_sparse``: the generation against the final network (success rate; ``robust`` when below the
  threshold).
* ``m09_real_train`` and ``m10_real_test``: accuracy over all ``2K`` outputs on real images (a real image
  called fake is wrong), the share called fake, per class.

Disjoint data: the first half of the training images (a fixed split) trains the network in the rounds, the
second the reference network. The shipped ``mnist/cnn-small`` start was trained on all of MNIST train, so with
it the reference network's data are new only to the rounds; ``from_scratch`` makes the halves fully disjoint.

Files in ``out``: ``rounds.json`` (settings, status and one record per round, written atomically after
every round), ``metrics.jsonl`` and TensorBoard (``tb/``), ``metrics.png``, ``round_NNN.png``, the network of
each round (``weights/round_NNN.safetensors``), the generated images (``data/round_NNN.safetensors``), the
reference network (``reference/``, cached) and the last network with its card (``model.safetensors``). A
rerun continues after the last finished round and ends as an uninterrupted run: every random choice is
seeded from ``(seed, round)``.

Steps of ``metrics.jsonl`` and TensorBoard: round ``r`` with ``E`` epochs per round uses steps
``r * (E + 1)`` (its generation) to ``r * (E + 1) + E`` (its epochs).
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors
from torch import nn
from tqdm.auto import tqdm

from alva.attacks.differential_evolution import DifferentialEvolution
from alva.attacks.sparse import SparseConfident, sparse_summary
from alva.data import fixed_subset, load_mnist
from alva.evaluation.accuracy import accuracy, predict_logits
from alva.models import create, zoo
from alva.report.fakeclass import fakeclass_metrics_plot, image_rows_grid
from alva.tracking.checkpoint import check_same_settings, load_checkpoint, save_checkpoint
from alva.tracking.files import atomic_write_bytes, atomic_write_json
from alva.tracking.logger import MetricsLogger
from alva.training.loop import TrainSettings, fit

__all__ = ["DESettings", "FakeClassSettings", "ReferenceSettings", "SparseSettings", "expand_fake_classes",
           "fake_class_stats", "fakeclass_train", "real_stats", "split_halves"]

FAKE_BIAS = -10.0  # bias of the fresh fake-class outputs: their probability starts near 0 (about e^-10 of the top)
SPLIT_SEED = 0  # the two disjoint halves of the training images (not the run's seed: the halves never move)
REAL_QUERIES = 500  # real test images whose distance to the nearest training image is the OOD proxy's yardstick
# parts of a round's seed
_GENERATE, _DE, _FIT, _SAMPLE, _PRETRAIN, _REFERENCE = range(1, 7)


@dataclass
class SparseSettings:
    """The generation process: :class:`~alva.attacks.sparse.SparseConfident` with these settings (``steps``
    is the full budget: a sample stops as soon as it succeeds)."""

    steps: int = 300
    lam: float = 0.05
    lr: float = 0.01
    confidence: float = 0.9
    max_pixels: int = 300
    mask_fraction: float = 0.5  # random pixels held at 0: without it every image of a class is the same
    optimizer: str = "adam"
    start: str = "zeros"


@dataclass
class DESettings:
    """Metric 7, a different process: black-box differential evolution setting ``pixels`` pixels of a blank
    image, ``per_class`` images per class on each round's network and on the reference network."""

    per_class: int = 2
    pixels: int = 50
    popsize: int = 40
    generations: int = 100


@dataclass
class ReferenceSettings:
    """Metric 6 (and metric 1's separate classifier): a standard classifier of the same architecture with
    ``outputs`` outputs (``K``, or ``2K`` with the fake outputs never trained), trained by
    :func:`~alva.training.loop.fit` on the other half of the training images (``size`` of them; None: all);
    ``per_class`` sparse images per class are generated on it once."""

    outputs: int = 10
    epochs: int = 2
    lr: float = 1e-3
    size: int | None = None
    per_class: int = 10


@dataclass
class FakeClassSettings:
    """Everything that defines a run; recorded in ``rounds.json`` and checked on resume."""

    num_classes: int = 10  # K: real classes; the network has 2K outputs
    rounds: int = 3  # most training rounds
    per_class: int = 20  # images generated per target class per round, to train on
    test_per_class: int = 5  # held-out images generated per target class per round, never trained on
    threshold: float = 0.05  # stop when the generation success rate is below this
    attack: SparseSettings = field(default_factory=SparseSettings)
    de: DESettings = field(default_factory=DESettings)
    reference: ReferenceSettings = field(default_factory=ReferenceSettings)
    epochs: int = 1  # training epochs per round
    lr: float = 5e-4
    batch_size: int = 128
    train_size: int | None = None  # real training images from the first half (None: all of it)
    min_fake_share: float = 0.1  # generated images repeated to make up at least this share of the training data
    sample: int = 1000  # most past images evaluated per epoch (metrics 3 and 5)
    eval_train_size: int = 5000  # real training images of metric 9 (a fixed subset)
    eval_test_size: int | None = None  # real test images of metric 10 (None: all)
    nn_pool_size: int = 5000  # training images searched for the nearest neighbour (metric 1)
    from_scratch: bool = False  # a fresh network trained on the real half first, instead of the given weights
    pretrain_epochs: int = 2  # with from_scratch
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("attack", "de", "reference"):
            value = getattr(self, name)
            if isinstance(value, dict):
                kind = {"attack": SparseSettings, "de": DESettings, "reference": ReferenceSettings}[name]
                setattr(self, name, kind(**value))
        checks = [
            (self.num_classes >= 2, f"num_classes must be >= 2, got {self.num_classes}"),
            (self.rounds >= 0, f"rounds must be >= 0, got {self.rounds}"),
            (self.per_class >= 1, f"per_class must be >= 1, got {self.per_class}"),
            (self.test_per_class >= 0, f"test_per_class must be >= 0, got {self.test_per_class}"),
            (self.de.per_class >= 0, f"de.per_class must be >= 0, got {self.de.per_class}"),
            (0.0 <= self.threshold <= 1.0, f"threshold must be in [0, 1], got {self.threshold}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (0.0 <= self.min_fake_share < 1.0, f"min_fake_share must be in [0, 1), got {self.min_fake_share}"),
            (self.sample >= 1, f"sample must be >= 1, got {self.sample}"),
            (self.reference.outputs in (self.num_classes, 2 * self.num_classes),
             f"reference.outputs must be K={self.num_classes} or 2K, got {self.reference.outputs}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FakeClassSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fake-class settings {unknown}")
        return cls(**data)


def round_seed(seed: int, r: int, part: int) -> int:
    """The seed of one random choice of round ``r``: a function of ``(seed, round, part)`` only."""
    return (int(seed) * 1_000_003 + int(r) * 1_009 + int(part)) % (2**62)


# -- the network ------------------------------------------------------------------------------------------------


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
        model.spec = {**model.spec, "num_classes": 2 * num_classes}
    if hasattr(model, "card"):
        del model.card
    return model


def _outputs(model: nn.Module, shape: tuple[int, ...]) -> int:
    device = next(model.parameters()).device
    return predict_logits(model, torch.zeros(1, *shape, device=device)).shape[1]


def _start_model(model_or_name: nn.Module | str, settings: FakeClassSettings, shape: tuple[int, ...],
                 device: str | torch.device) -> nn.Module:
    """The network of round 0 before any weights are loaded or trained: 2K outputs."""
    k = settings.num_classes
    model = zoo.load(model_or_name, device=device) if isinstance(model_or_name, (str, Path)) \
        else copy.deepcopy(model_or_name).to(device)
    if settings.from_scratch:
        if not hasattr(model, "spec"):
            raise ValueError("from_scratch needs a model made by alva.models.create or loaded from the zoo")
        spec = model.spec
        torch.manual_seed(round_seed(settings.seed, 0, _PRETRAIN))
        return create(spec["architecture"], num_classes=2 * k, in_shape=tuple(spec["in_shape"]),
                      mean=tuple(model.mean.flatten().tolist()), std=tuple(model.std.flatten().tolist())).to(device)
    outputs = _outputs(model, shape)
    if outputs == 2 * k:
        return model
    if outputs != k:
        raise ValueError(f"the model has {outputs} outputs: expected K={k} (expanded to 2K) or 2K={2 * k}")
    return expand_fake_classes(model, k)


# -- data ---------------------------------------------------------------------------------------------------------


def split_halves(x: torch.Tensor, y: torch.Tensor, seed: int = SPLIT_SEED
                 ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Two disjoint halves of ``(x, y)`` by a fixed random permutation, each in the original order: the
    first trains the fake-class network, the second the reference network of metric 6."""
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    a, b = perm[: len(x) // 2].sort().values, perm[len(x) // 2:].sort().values
    return (x[a], y[a]), (x[b], y[b])


def _subset(data: tuple[torch.Tensor, torch.Tensor], n: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    return data if n is None or n >= len(data[0]) else fixed_subset(*data, n, seed=seed)


@dataclass
class RoundData:
    """The successful images of one round's generation (``t_*``: their real target class ``k``)."""

    x_train: torch.Tensor
    t_train: torch.Tensor
    x_test: torch.Tensor
    t_test: torch.Tensor
    x_de: torch.Tensor
    t_de: torch.Tensor

    def save(self, path: Path) -> None:
        tensors = {k: v.detach().cpu().contiguous() for k, v in asdict(self).items()}
        atomic_write_bytes(path, save_safetensors(tensors))

    @classmethod
    def load(cls, path: Path) -> RoundData:
        return cls(**load_file(str(path)))


def _cat(parts: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    return torch.cat(parts) if parts else like[:0]


def _sample(x: torch.Tensor, t: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All of ``(x, t)`` when at most ``n``, else ``n`` of them drawn with ``seed`` (in their order)."""
    if len(x) <= n:
        return x, t
    rows = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return x[rows], t[rows]


# -- figures ------------------------------------------------------------------------------------------------------


def _summary(values: dict[str, torch.Tensor], rows: torch.Tensor) -> dict[str, float]:
    out: dict[str, Any] = {"n": int(rows.sum())}
    if out["n"]:
        out.update({k: v[rows].float().mean().item() for k, v in values.items()})
    return out


def _with_classes(values: dict[str, torch.Tensor], classes: torch.Tensor, num_classes: int) -> dict[str, Any]:
    """Means of ``values`` overall and per class (classes with no sample are left out)."""
    record = _summary(values, torch.ones_like(classes, dtype=torch.bool))
    record["per_class"] = {str(c): _summary(values, classes == c) for c in range(num_classes)
                           if bool((classes == c).any())}
    return record


def fake_class_stats(logits: torch.Tensor, targets: torch.Tensor, num_classes: int, confidence: float = 0.9
                     ) -> dict[str, Any]:
    """How a ``2K``-output network sees generated images of the real classes ``targets`` (their label is the
    fake class ``K + target``): means overall and per target class of ``fake_prob``, ``loss`` (cross-entropy
    against the fake class), ``detected`` (predicted as that fake class), ``any_fake`` (predicted as some fake
    class), ``target_prob`` and ``fooled`` (``target_prob >= confidence``: still adversarial)."""
    if len(targets) == 0:
        return {"n": 0, "per_class": {}}
    logits, targets = logits.detach().cpu().float(), targets.cpu()
    fake = targets + num_classes
    logp = logits.log_softmax(dim=1)
    pred = logits.argmax(dim=1)
    target_prob = logp.gather(1, targets[:, None]).squeeze(1).exp()
    values = {
        "fake_prob": logp.gather(1, fake[:, None]).squeeze(1).exp(),
        "loss": F.nll_loss(logp, fake, reduction="none"),
        "detected": pred == fake,
        "any_fake": pred >= num_classes,
        "target_prob": target_prob,
        "fooled": target_prob >= confidence,
    }
    return _with_classes(values, targets, num_classes)


def real_stats(logits: torch.Tensor, y: torch.Tensor, num_classes: int) -> dict[str, Any]:
    """Accuracy over all outputs on real images (``acc``; a real image called fake counts as wrong) and the
    share called fake (``fake_rate``), overall and per class."""
    logits, y = logits.detach().cpu(), y.cpu()
    pred = logits.argmax(dim=1)
    return _with_classes({"acc": pred == y, "fake_rate": pred >= num_classes}, y, num_classes)


def _nearest(queries: torch.Tensor, pool: torch.Tensor, *, cosine: bool = False, chunk: int = 500
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance of each query to its nearest pool image and that image's index: L2, or with ``cosine``
    ``1 - cos`` between the images as vectors (blind to brightness: a faint image is near its own shape)."""
    flat, q = pool.flatten(1), queries.flatten(1)
    if cosine:
        flat, q = F.normalize(flat, dim=1), F.normalize(q, dim=1)
    dist, index = [], []
    for i in range(0, len(q), chunk):
        if cosine:
            sim = q[i:i + chunk] @ flat.T
            best = sim.max(dim=1)
            dist.append(1 - best.values)
        else:
            best = torch.cdist(q[i:i + chunk], flat).min(dim=1)
            dist.append(best.values)
        index.append(best.indices)
    if not dist:
        return queries.new_zeros(0), torch.zeros(0, dtype=torch.long)
    return torch.cat(dist), torch.cat(index)


# -- the run ------------------------------------------------------------------------------------------------------


class _Run:
    """Data, reference network and measurements of one fake-class run."""

    def __init__(self, settings: FakeClassSettings, out: Path, train, test, device, progress: bool,
                 log: Callable[[str], None]) -> None:
        self.settings, self.out, self.device, self.progress, self.log = settings, out, device, progress, log
        s = settings
        self.k = s.num_classes
        half_a, half_b = split_halves(*train)
        self.real = _subset(half_a, s.train_size, s.seed)
        self.half_b = _subset(half_b, s.reference.size, s.seed)
        self.eval_train = _subset(self.real, s.eval_train_size, s.seed)
        self.eval_test = _subset(test, s.eval_test_size, s.seed)
        self.pool, self.pool_y = _subset(self.real, s.nn_pool_size, s.seed)
        queries, labels = _subset(test, REAL_QUERIES, s.seed + 1)
        cos, near = _nearest(queries, self.pool, cosine=True)
        self.real_yardstick = {"nn_dist_real_test": _nearest(queries, self.pool)[0].mean().item(),
                               "nn_cosine_real_test": cos.mean().item(),
                               "nn_agree_real_test": (self.pool_y[near] == labels).float().mean().item()}
        self.shape = tuple(train[0].shape[1:])

    # the reference network (metric 6) and its fixed image sets ---------------------------------------------

    def reference_network(self, like: nn.Module) -> nn.Module:
        s = self.settings
        folder = self.out / "reference"
        key = {**asdict(s.reference), "seed": s.seed, "train_images": len(self.half_b[0]),
               "architecture": getattr(like, "spec", {}).get("architecture")}
        path = folder / "model.safetensors"
        if path.exists() and zoo.card(path).get("fakeclass_reference") == key:
            return zoo.load(path, device=self.device)
        if not hasattr(like, "spec"):
            raise ValueError("the reference network is built like the trained one: it must be an alva model")
        spec = like.spec
        torch.manual_seed(round_seed(s.seed, 0, _REFERENCE))
        model = create(spec["architecture"], num_classes=s.reference.outputs, in_shape=tuple(spec["in_shape"]),
                       mean=tuple(like.mean.flatten().tolist()), std=tuple(like.std.flatten().tolist()))
        self.log(f"training the reference network on {len(self.half_b[0])} images of the other half")
        fit(model, self.half_b, TrainSettings(epochs=s.reference.epochs, lr=s.reference.lr, batch_size=s.batch_size,
                                              seed=round_seed(s.seed, 0, _REFERENCE)),
            device=self.device, progress=self.progress)
        model.eval()
        test_acc = accuracy(model, *self.eval_test)
        zoo.save(model, {**zoo.architecture_card(model), "fakeclass_reference": key, "clean_test_accuracy": test_acc,
                         "note": "reference network of fake-class training (metric 6), other half of MNIST train"},
                 path)
        return model

    def reference_sets(self, reference: nn.Module) -> dict[str, Any]:
        """Sparse images (metric 6) and DE images (metric 7) generated once on the reference network."""
        s = self.settings
        sparse = self._sparse(reference, s.reference.per_class, round_seed(s.seed, -1, _GENERATE))
        de = self._de(reference, s.de.per_class, round_seed(s.seed, -1, _DE))
        keep_s, keep_d = sparse.success.cpu(), de.success.cpu() if de is not None else None
        return {
            "sparse": (sparse.x_adv.cpu()[keep_s], sparse.target.cpu()[keep_s]),
            "de": (de.x_adv.cpu()[keep_d], de.target.cpu()[keep_d]) if de is not None else self._empty(),
            "summary": {"sparse": _plain(sparse_summary(sparse)),
                        "de": _plain(sparse_summary(de)) if de is not None else {"overall": {"n": 0}},
                        "test_acc": accuracy(reference, *self.eval_test)},
        }

    def _empty(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(0, *self.shape), torch.zeros(0, dtype=torch.long)

    # generation ---------------------------------------------------------------------------------------------

    def _sparse(self, model: nn.Module, per_class: int, seed: int):
        a = self.settings.attack
        attack = SparseConfident(model, confidence=a.confidence, max_pixels=a.max_pixels, lam=a.lam, steps=a.steps,
                                 lr=a.lr, optimizer=a.optimizer, start=a.start, mask_fraction=a.mask_fraction,
                                 seed=seed)
        torch.manual_seed(seed)
        targets = torch.arange(self.k, device=self.device).repeat(per_class)
        return attack.generate(targets, self.shape)

    def _de(self, model: nn.Module, per_class: int, seed: int):
        d = self.settings.de
        if per_class == 0:
            return None
        attack = DifferentialEvolution(model, d.pixels, d.popsize, d.generations,
                                       confidence=self.settings.attack.confidence, seed=seed)
        return attack.generate(torch.arange(self.k, device=self.device).repeat(per_class), self.shape)

    def generate(self, model: nn.Module, r: int, reference: nn.Module) -> tuple[RoundData, dict[str, Any]]:
        """Round ``r``'s generation against ``model``: its data, metrics 0, 1 and 7's generation, and the grid."""
        s = self.settings
        result = self._sparse(model, s.per_class + s.test_per_class, round_seed(s.seed, r, _GENERATE))
        x, t, ok = result.x_adv.cpu(), result.target.cpu(), result.success.cpu()
        n_train = s.per_class * self.k
        train_rows = torch.arange(len(x)) < n_train
        de = self._de(model, s.de.per_class, round_seed(s.seed, r, _DE))
        de_x = de.x_adv.cpu()[de.success.cpu()] if de is not None else self._empty()[0]
        de_t = de.target.cpu()[de.success.cpu()] if de is not None else self._empty()[1]
        data = RoundData(x[train_rows & ok], t[train_rows & ok], x[~train_rows & ok], t[~train_rows & ok], de_x, de_t)
        generation = _plain(sparse_summary(result))
        metrics = {
            "m00_generation": {**generation["overall"], "train_kept": len(data.x_train), "test_kept": len(data.x_test),
                               "per_class": generation["per_class"]},
            "m01_ood": self.ood(x[ok], t[ok], reference),
            "m07_other_process": {"generation": self._de_generation(de)},
        }
        self._grid(r, result, de, reference)
        return data, metrics

    def _de_generation(self, de) -> dict[str, Any]:
        if de is None:
            return {"n": 0, "per_class": {}}
        summary = _plain(sparse_summary(de))
        return {**summary["overall"], "per_class": summary["per_class"]}

    def ood(self, x: torch.Tensor, t: torch.Tensor, reference: nn.Module) -> dict[str, Any]:
        """Metric 1's proxy for the successful generated images ``x`` of the classes ``t``: L2 distance to the
        nearest real training image (``nn_dist``), cosine distance to the most similar one (``nn_cosine``) and
        whether that one is of class ``t`` (``nn_agree``: a 1-NN classifier's view), each beside its value for
        real test images (``*_real_test``); and the reference network's view of them."""
        if len(x) == 0:
            return {"n": 0, **self.real_yardstick, "per_class": {}}
        dist, _ = _nearest(x, self.pool)
        cos, near = _nearest(x, self.pool, cosine=True)
        probs = predict_logits(reference, x).softmax(dim=1)
        values = {"nn_dist": dist, "nn_cosine": cos, "nn_agree": self.pool_y[near] == t,
                  "reference_target_prob": probs.gather(1, t[:, None]).squeeze(1),
                  "reference_agree": probs.argmax(dim=1) == t, "reference_max_prob": probs.amax(dim=1)}
        record = _with_classes(values, t, self.k)
        per_class = record.pop("per_class")
        ratio = record["nn_dist"] / max(self.real_yardstick["nn_dist_real_test"], 1e-12)
        return {**record, **self.real_yardstick, "nn_ratio": ratio, "per_class": per_class}

    def _grid(self, r: int, result, de, reference: nn.Module) -> None:
        """round_NNN.png: per class, a generated training image, its most similar real training image, a held-out
        image, and a DE image; titles give the target probability, L0 and the reference network's call."""
        s, k = self.settings, self.k
        x, t, ok = result.x_adv.cpu(), result.target.cpu(), result.success.cpu()
        prob = result.extras["target_prob"].cpu()
        l0 = result.extras["l0"].cpu()
        ref_pred = predict_logits(reference, x).argmax(dim=1)
        n_train = s.per_class * k

        def pick(rows: range) -> list[int | None]:
            chosen = []
            for c in range(k):
                cands = [i for i in rows if t[i] == c]
                good = [i for i in cands if ok[i]]
                chosen.append((good or cands or [None])[0])
            return chosen

        def row(label: str, idx: list[int | None]) -> tuple[str, list, list[str]]:
            return (label, [None if i is None else x[i] for i in idx],
                    ["" if i is None else f"{int(t[i])} p={prob[i]:.2f} L0={int(l0[i])}\nref:{int(ref_pred[i])}"
                     + ("" if ok[i] else " FAIL") for i in idx])

        train_idx = pick(range(n_train))
        present = [i for i in train_idx if i is not None]
        dist, near = _nearest(x[present], self.pool, cosine=True) if present else (torch.zeros(0),
                                                                                   torch.zeros(0, dtype=torch.long))
        near_images, near_titles, j = [], [], 0
        for i in train_idx:
            if i is None:
                near_images.append(None)
                near_titles.append("")
            else:
                near_images.append(self.pool[near[j]])
                near_titles.append(f"{int(self.pool_y[near[j]])} cos d={dist[j]:.2f}")
                j += 1
        rows = [row("generated (train)", train_idx), ("most similar real", near_images, near_titles)]
        if s.test_per_class:
            rows.append(row("held-out", pick(range(n_train, len(x)))))
        if de is not None:
            de_x, de_t = de.x_adv.cpu(), de.target.cpu()
            de_p = de.adv_logits.cpu().softmax(dim=1).gather(1, de_t[:, None]).squeeze(1)
            idx = [next((i for i in range(len(de_t)) if de_t[i] == c and de.success[i]),
                        next((i for i in range(len(de_t)) if de_t[i] == c), None)) for c in range(k)]
            rows.append(("DE (metric 7)", [None if i is None else de_x[i] for i in idx],
                         ["" if i is None else f"{c} p={de_p[i]:.2f}" for c, i in enumerate(idx)]))
        image_rows_grid(self.out / f"round_{r:03d}.png", rows, columns=k,
                        title=f"round {r}: sparse images generated against the network of the round "
                              f"(success {result.success.float().mean():.0%})")

    # evaluation ---------------------------------------------------------------------------------------------

    def evaluate(self, model: nn.Module, r: int, data: list[RoundData], sets: dict[str, Any], *, epoch: int,
                 final: bool) -> dict[str, Any]:
        """Metrics 2-7 (detection of generated images), 9 and 10 of ``model``.

        During round ``r``'s training (``final=False``) the current round is ``data[r]``: its training images
        (2), all training images so far (3), its held-out images (4), earlier held-out images (5), DE images of
        rounds ``<= r`` (7). For the final network (``final=True``, generation of round ``r`` made against it)
        only earlier rounds' images count: (3) ``data[:r]``, (5) ``data[:r]``, (7) ``data[:r]``.
        """
        s, k = self.settings, self.k
        conf = s.attack.confidence
        upto = r if final else r + 1

        def stats(x: torch.Tensor, t: torch.Tensor) -> dict[str, Any]:
            return fake_class_stats(predict_logits(model, x) if len(x) else torch.zeros(0, 2 * k), t, k, conf)

        empty = self._empty()
        train_x = _cat([d.x_train for d in data[:upto]], empty[0])
        train_t = _cat([d.t_train for d in data[:upto]], empty[1])
        past_test = data[:r]
        test_x = _cat([d.x_test for d in past_test], empty[0])
        test_t = _cat([d.t_test for d in past_test], empty[1])
        de_x = _cat([d.x_de for d in data[:upto]], empty[0])
        de_t = _cat([d.t_de for d in data[:upto]], empty[1])
        metrics: dict[str, Any] = {}
        if not final:
            metrics["m02_current_batch"] = stats(data[r].x_train, data[r].t_train)
        metrics["m03_past_train"] = stats(*_sample(train_x, train_t, s.sample, round_seed(s.seed, r, _SAMPLE) + epoch))
        if not final:
            metrics["m04_test_current"] = stats(data[r].x_test, data[r].t_test)
        metrics["m05_test_past"] = stats(*_sample(test_x, test_t, s.sample, round_seed(s.seed, r, _SAMPLE) + epoch
                                                  + 7919))
        metrics["m06_other_network"] = stats(*sets["sparse"])
        metrics["m07_other_process"] = {"current_net": stats(de_x, de_t), "reference_net": stats(*sets["de"])}
        metrics.update(self.real_metrics(model))
        return metrics

    def real_metrics(self, model: nn.Module) -> dict[str, Any]:
        return {"m09_real_train": real_stats(predict_logits(model, self.eval_train[0]), self.eval_train[1], self.k),
                "m10_real_test": real_stats(predict_logits(model, self.eval_test[0]), self.eval_test[1], self.k)}

    def training_data(self, data: list[RoundData]) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Real images and every generated training image so far labelled ``K + k``, the generated ones
        repeated (whole copies) to make up at least ``min_fake_share``; also the number of repeats."""
        x_fake = torch.cat([d.x_train for d in data])
        y_fake = torch.cat([d.t_train for d in data]) + self.k
        n_real, n_fake = len(self.real[0]), len(x_fake)
        share = self.settings.min_fake_share
        repeats = 1 if n_fake == 0 else max(1, math.ceil(share * n_real / ((1 - share) * n_fake)))
        x = torch.cat([self.real[0], x_fake.repeat(repeats, *([1] * (x_fake.ndim - 1)))])
        y = torch.cat([self.real[1], y_fake.repeat(repeats)])
        return x, y, repeats


def _plain(summary: dict[str, Any]) -> dict[str, Any]:
    """A :func:`sparse_summary` with string class keys (as JSON writes them)."""
    return {"overall": summary["overall"], "per_class": {str(c): v for c, v in summary["per_class"].items()}}


def _resumable(state: dict[str, Any], settings: FakeClassSettings, out: Path) -> dict[str, Any]:
    """The saved run ``state`` to continue with ``settings``: they must be the same but for ``rounds``, which
    may grow (a run stopped at its round limit goes on from there: its last generation becomes a round)."""
    saved, now = state["settings"], asdict(settings)
    check_same_settings(out, saved, now, may_change=("rounds",))
    trained = sum(1 for r in state["rounds"] if not r.get("final"))
    if settings.rounds < trained:
        raise ValueError(f"cannot resume {out} with rounds={settings.rounds}: it has trained {trained} rounds")
    if settings.rounds != saved["rounds"] and state["status"] == "round limit" and settings.rounds > trained:
        state["rounds"] = state["rounds"][:-1]
        state["status"] = "running"
        state.pop("final", None)
    state["settings"]["rounds"] = settings.rounds
    return state


def _clean(out: Path) -> None:
    """Remove a previous run's files from ``out`` (the cached reference network stays)."""
    for name in ("rounds.json", "metrics.jsonl", "metrics.png", "model.safetensors", "model.json"):
        (out / name).unlink(missing_ok=True)
    for name in ("tb", "data", "weights"):
        shutil.rmtree(out / name, ignore_errors=True)
    for grid in out.glob("round_*.png"):
        grid.unlink()


def fakeclass_train(model_or_name: nn.Module | str = "mnist/cnn-small", settings: FakeClassSettings | None = None,
                    out: str | Path = "runs/fakeclass", *, train: tuple[torch.Tensor, torch.Tensor] | None = None,
                    test: tuple[torch.Tensor, torch.Tensor] | None = None, resume: bool = True,
                    progress: bool = True, device: str | torch.device = "cpu", data_root: str | None = None,
                    log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run fake-class training into ``out`` and return the content of ``out/rounds.json``.

    ``model_or_name``: a ``K``-class classifier (zoo name, weights file or module; expanded to ``2K`` outputs
    by :func:`expand_fake_classes`), a ``2K``-output one, or, with ``settings.from_scratch``, only the
    architecture. ``train`` and ``test`` default to MNIST; the first half of ``train`` (a fixed split) trains
    the network, the second the reference network. The given model is copied, never changed.

    ``resume=True`` continues the run in ``out`` after its last finished round (its settings must be the
    same); ``resume=False`` starts over, deleting the previous run's files (not the cached reference network).
    """
    settings = settings or FakeClassSettings()
    s = settings
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rounds_path = out / "rounds.json"
    state: dict[str, Any] | None = None
    if resume and rounds_path.exists():
        state = _resumable(json.loads(rounds_path.read_text()), s, out)
    elif not resume:
        _clean(out)
    train = train if train is not None else load_mnist("train", data_root)
    test = test if test is not None else load_mnist("test", data_root)
    run = _Run(s, out, train, test, device, progress, log)
    model = _start_model(model_or_name, s, run.shape, device)
    sizes = {"real_train": len(run.real[0]), "reference_train": len(run.half_b[0]), "test": len(test[0])}
    if state is not None and state.get("data") != sizes:
        raise ValueError(f"cannot resume {out}: its data had sizes {state.get('data')}, now {sizes}")
    history: list[dict[str, Any]] = state["rounds"] if state else []
    if state is None:
        state = {"settings": asdict(s), "data": sizes, "status": "running", "rounds": history}
        atomic_write_json(rounds_path, state)  # the settings, checked by any later resume
    if state["status"] != "running":
        log(f"the run in {out} is finished ({state['status']})")
        atomic_write_json(rounds_path, state)
        _plots(out, state)
        return state

    r = len(history)
    weights = out / "weights"
    if (weights / f"round_{r:03d}.safetensors").exists():
        model.load_state_dict(load_checkpoint(weights / f"round_{r:03d}.safetensors")["model"])
        if r:
            log(f"resuming after round {r - 1}")
    elif r == 0:
        if s.from_scratch:
            log(f"training from scratch on {len(run.real[0])} real images first")
            fit(model, run.real, TrainSettings(epochs=s.pretrain_epochs, lr=1e-3, batch_size=s.batch_size,
                                               seed=round_seed(s.seed, 0, _PRETRAIN)),
                device=device, progress=progress)
        save_checkpoint(weights / "round_000.safetensors", {"round": 0, "model": model.state_dict()})
    else:
        raise FileNotFoundError(f"{weights / f'round_{r:03d}.safetensors'} is missing: cannot resume {out}")
    model.eval()
    data = [RoundData.load(out / "data" / f"round_{i:03d}.safetensors") for i in range(r)]
    reference = run.reference_network(model)
    sets = run.reference_sets(reference)
    state["reference"] = sets["summary"]
    per_round = s.epochs + 1
    logger = MetricsLogger(out, resume_step=r * per_round)
    bar = tqdm(total=s.rounds + 1, initial=r, desc="fake-class rounds", disable=not progress, dynamic_ncols=True)
    try:
        while True:
            started = time.perf_counter()
            bar.set_postfix_str(f"round {r}: generating")
            round_data, gen_metrics = run.generate(model, r, reference)
            (out / "data").mkdir(exist_ok=True)
            round_data.save(out / "data" / f"round_{r:03d}.safetensors")
            data.append(round_data)
            before = run.real_metrics(model)
            logger.log(r * per_round, {"round": r, "phase": "generation", **gen_metrics, **before})
            g = gen_metrics["m00_generation"]
            log(f"round {r}: generation success {g['success_rate']:.3f}, target prob {g['target_prob']:.3f}, "
                f"L0 {g['l0']:.1f}; test acc {before['m10_real_test']['acc']:.4f}")
            failed = g["success_rate"] < s.threshold or g["train_kept"] == 0
            if failed or r >= s.rounds:
                evaluation = run.evaluate(model, r, data, sets, epoch=0, final=True)
                evaluation["m08_final_sparse"] = {**{k: v for k, v in g.items() if k != "per_class"},
                                                  "robust": bool(failed), "per_class": g["per_class"]}
                metrics = _merge(gen_metrics, evaluation)
                logger.log(r * per_round + 1, {"round": r, "phase": "final", **metrics})
                history.append({"round": r, "final": True, "metrics": metrics,
                                "time_s": round(time.perf_counter() - started, 3)})
                state["status"] = "robust" if failed else "round limit"
                state["final"] = {"robust": bool(failed), "rounds_until_failure": r if failed else None,
                                  "trained_rounds": r, "m08_success_rate": g["success_rate"]}
                atomic_write_json(rounds_path, state)
                bar.update(1)
                log(f"stopped at round {r}: " + ("generation failed, the network is deemed robust" if failed
                                                 else f"round limit {s.rounds}, generation still succeeds"))
                break

            bar.set_postfix_str(f"round {r}: training")
            x, y, repeats = run.training_data(data)
            last: dict[str, Any] = {}

            def after_epoch(epoch: int, record: dict[str, Any], r: int = r, last: dict = last) -> None:
                metrics = run.evaluate(model, r, data, sets, epoch=epoch, final=False)
                logger.log(r * per_round + epoch, {"round": r, "epoch": epoch, "phase": "train",
                                                   "train": record["train"], **metrics})
                last.clear()
                last.update(metrics)

            fit(model, (x, y), TrainSettings(epochs=s.epochs, lr=s.lr, batch_size=s.batch_size,
                                             seed=round_seed(s.seed, r, _FIT)),
                device=device, progress=progress, on_epoch_end=after_epoch)
            model.eval()
            save_checkpoint(weights / f"round_{r + 1:03d}.safetensors", {"round": r + 1, "model": model.state_dict()})
            if hasattr(model, "spec"):
                zoo.save(model, {**zoo.architecture_card(model), "fakeclass_rounds": r + 1,
                                 "fake_classes": f"outputs {s.num_classes}..{2 * s.num_classes - 1} are the fake "
                                                 f"classes of outputs 0..{s.num_classes - 1}"}, out / "model")
            metrics = _merge(gen_metrics, last)
            history.append({"round": r, "metrics": metrics, "before_training": before,
                            "training_data": {"real": len(run.real[0]), "generated": sum(len(d.x_train) for d in data),
                                              "repeats": repeats},
                            "time_s": round(time.perf_counter() - started, 3)})
            atomic_write_json(rounds_path, state)
            _plots(out, state)
            log(f"round {r} trained: detected (2) {_rate(metrics, 'm02_current_batch')}, (4) "
                f"{_rate(metrics, 'm04_test_current')}, (6) {_rate(metrics, 'm06_other_network')}; test acc "
                f"{metrics['m10_real_test']['acc']:.4f}")
            bar.update(1)
            r += 1
    finally:
        logger.close()
        bar.close()
    _plots(out, state)
    return state


def _rate(metrics: dict[str, Any], key: str) -> str:
    value = metrics[key].get("detected")
    return "n/a" if value is None else f"{value:.3f}"


def _merge(generation: dict[str, Any], evaluation: dict[str, Any]) -> dict[str, Any]:
    """One round's metrics, in key order: metric 7 holds both DE's generation and the detection figures."""
    metrics = {**generation, **evaluation}
    metrics["m07_other_process"] = {**generation["m07_other_process"], **evaluation["m07_other_process"]}
    return {k: metrics[k] for k in sorted(metrics)}


def _plots(out: Path, state: dict[str, Any]) -> None:
    fakeclass_metrics_plot(out / "metrics.png", state["rounds"], max_pixels=state["settings"]["attack"]["max_pixels"],
                           title=f"fake-class training ({state['status']})")

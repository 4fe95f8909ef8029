"""What defines a fake-class run: the generation, the second process, the reference network and the rounds;
and the seed of every random choice of a round."""

from __future__ import annotations

from dataclasses import dataclass, field

# parts of a round's seed
GENERATE, DE, FIT, SAMPLE, PRETRAIN, REFERENCE = range(1, 7)


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


def round_seed(seed: int, r: int, part: int) -> int:
    """The seed of one random choice of round ``r``: a function of ``(seed, round, part)`` only."""
    return (int(seed) * 1_000_003 + int(r) * 1_009 + int(part)) % (2**62)

"""Small DCGAN-style generators and an AC-WGAN-GP critic for 28 x 28 MNIST, and their weights files.

The critic follows WGAN-GP (Gulrajani et al. 2017, "Improved Training of Wasserstein GANs"): no batch
norm, a linear Wasserstein head. It also has the auxiliary classifier head of AC-GAN (Odena et al. 2017,
"Conditional Image Synthesis with Auxiliary Classifier GANs"). Generators end in a sigmoid, so their
images are in [0, 1] and go straight into a classifier: ``C(G(z, y))``.

Weights are stored as safetensors with a JSON card (``"kind": "generator"``); :func:`load_generator`
never unpickles.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alva.models.generative import ConditionalGenerativeModel, GenerativeModel
from alva.models.zoo import check_weights, read_weights, resolve, stored_card, write_weights

GENERATOR_KIND = "generator"


def _upsampler(channels: int) -> nn.Sequential:
    """128 x 7 x 7 features to a 1 x 28 x 28 image in [0, 1]: two stride-2 transposed convolutions (DCGAN)."""
    return nn.Sequential(
        nn.BatchNorm2d(channels), nn.ReLU(),
        nn.ConvTranspose2d(channels, 64, 4, stride=2, padding=1),
        nn.BatchNorm2d(64), nn.ReLU(),
        nn.ConvTranspose2d(64, 1, 4, stride=2, padding=1),
        nn.Sigmoid(),
    )


class Generator(GenerativeModel):
    """Unconditional DCGAN-style generator: ``z`` -> linear 128 x 7 x 7 -> two transposed convs -> 1 x 28 x 28."""

    architecture = "dcgan-mnist"
    num_classes: int
    """The classes of the data it learnt to draw (set when it is made for a data set; no input of the model)."""

    def __init__(self, latent_dim: int = 64, channels: int = 128) -> None:
        super().__init__()
        self.latent_shape = (int(latent_dim),)
        self.channels = channels
        self.project = nn.Linear(latent_dim, channels * 7 * 7)
        self.up = _upsampler(channels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.up(self.project(z.flatten(1)).view(-1, self.channels, 7, 7))

    def spec(self) -> dict[str, Any]:
        """What rebuilds this generator from a weights file."""
        return {"architecture": self.architecture, "latent_shape": list(self.latent_shape), "conditional": False,
                "channels": self.channels}


class ACGenerator(ConditionalGenerativeModel):
    """Conditional generator of AC-GAN (Odena et al. 2017): ``[z, embed(y)]`` -> linear -> two transposed convs."""

    architecture = "ac-dcgan-mnist"

    def __init__(self, latent_dim: int = 64, num_classes: int = 10, embed_dim: int = 32, channels: int = 128) -> None:
        super().__init__()
        self.latent_shape = (int(latent_dim),)
        self.num_classes = int(num_classes)
        self.embed_dim = embed_dim
        self.channels = channels
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.project = nn.Linear(latent_dim + embed_dim, channels * 7 * 7)
        self.up = _upsampler(channels)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z.flatten(1), self.embed(y.long())], dim=1)
        return self.up(self.project(h).view(-1, self.channels, 7, 7))

    def spec(self) -> dict[str, Any]:
        """What rebuilds this generator from a weights file."""
        return {"architecture": self.architecture, "latent_shape": list(self.latent_shape), "conditional": True,
                "num_classes": self.num_classes, "embed_dim": self.embed_dim, "channels": self.channels}


class ACCritic(nn.Module):
    """WGAN-GP critic without batch norm (Gulrajani et al. 2017) plus an AC-GAN auxiliary classifier head.

    ``critic(x)`` returns ``(score, logits)``: one Wasserstein score and ``num_classes`` logits per image.
    """

    def __init__(self, num_classes: int = 10, width: int = 64) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Flatten(),
        )
        self.score = nn.Linear(2 * width * 7 * 7, 1)
        self.classify = nn.Linear(2 * width * 7 * 7, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.score(h).squeeze(1), self.classify(h)


def build_generator(spec: dict[str, Any]) -> Generator | ACGenerator:
    """A fresh generator from the ``spec`` part of a card."""
    latent_dim = int(spec["latent_shape"][0])
    if spec["architecture"] == ACGenerator.architecture:
        return ACGenerator(latent_dim, int(spec["num_classes"]), int(spec.get("embed_dim", 32)),
                           int(spec.get("channels", 128)))
    if spec["architecture"] == Generator.architecture:
        return Generator(latent_dim, int(spec.get("channels", 128)))
    raise ValueError(f"unknown generator architecture {spec['architecture']!r}")


def save_generator(generator: Generator | ACGenerator, card: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``path`` (``.safetensors``, the card embedded in its header) and the card beside it (``.json``).

    The card gets ``kind: "generator"`` and the generator's architecture spec.
    """
    return write_weights(generator, {"kind": GENERATOR_KIND, **generator.spec(), **card}, path)


def load_generator(name_or_path: str | os.PathLike, *, device: str | torch.device = "cpu", verify: bool = True
                   ) -> Generator | ACGenerator:
    """A generator in eval mode from the zoo (``mnist/acwgan-gp``), a ``.safetensors`` file or a run folder.

    Never unpickles. The returned generator carries its card as ``generator.card``. With ``verify`` the weights
    must have the SHA-256 their card records.
    """
    text = str(name_or_path)
    if Path(text).is_dir():
        text = str(Path(text) / "generator.safetensors")
    path = resolve(text)
    info = stored_card(path)
    if info.get("kind") != GENERATOR_KIND:
        raise ValueError(f"{path} is not a generator (card kind {info.get('kind', 'classifier')!r}); "
                         "use alva.models.load for classifiers")
    generator = build_generator(info)
    tensors = read_weights(path)
    if verify:
        check_weights(path, info, tensors)
    generator.load_state_dict(tensors, strict=True)
    generator.card = info
    return generator.to(device).eval()

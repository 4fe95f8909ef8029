"""Convergence training on a tiny budget: runs end to end, resumes, and lowers the ALVA success rate."""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from torch import nn

from alva.data import fixed_subset
from alva.models import load
from alva.models.generative import ConditionalGenerativeModel
from alva.training.augment import GenerationSettings
from alva.training.convergence import ConvergenceSettings, converge
from alva.training.loop import TrainSettings


class TinyConditional(ConditionalGenerativeModel):
    """Class templates from real digits plus a latent-driven perturbation: the oracle agrees on most samples."""

    latent_shape = (8,)

    def __init__(self, templates: torch.Tensor) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.register_buffer("templates", templates)
        self.mix = nn.Linear(8, 784)

    def forward(self, z, y):
        return (self.templates[y] + 0.4 * torch.tanh(self.mix(z)).view(-1, 1, 28, 28)).clamp(0, 1)


def test_convergence_training_lowers_alva_success_and_resumes(tmp_path, mnist_train, mnist_test):
    x_train, y_train = fixed_subset(*mnist_train, 2000, seed=0)
    templates = torch.stack([x_train[y_train == c][:20].mean(0) for c in range(10)])
    generator = TinyConditional(templates)
    test = fixed_subset(*mnist_test, 500, seed=0)
    generation = GenerationSettings(n=600, eps=2.0, steps=5, chunk_size=300, keep="successful")
    settings = ConvergenceSettings(rounds=2, threshold=0.0, n_eval=200, generation=generation,
                                   training=TrainSettings(epochs=2, lr=1e-3))
    cnn, oracle = load("mnist/cnn-small"), load("mnist/softmax")
    history = converge(cnn, generator, oracle, (x_train, y_train), test, (test[0][:100], test[1][:100]),
                       tmp_path, settings, progress=False, log=lambda _: None)
    rates = [h["metrics"]["alva_success"] for h in history if "metrics" in h]
    assert len(rates) == 3 and rates[-1] < rates[0]
    assert (tmp_path / "rounds.png").exists() and (tmp_path / "model.safetensors").exists()
    # A rerun finds every round done and changes nothing.
    again = converge(cnn, generator, oracle, (x_train, y_train), test, (test[0][:100], test[1][:100]), tmp_path,
                     settings, progress=False, log=lambda _: None)
    assert again == json.loads((tmp_path / "rounds.json").read_text()) == history
    assert F.softmax(cnn(test[0][:5]), 1).shape == (5, 10)  # the caller's classifier is untouched

"""Classifiers, the normalisation wrapper and the zoo of shipped weights."""

from alva.models.classifiers import ARCHITECTURES, MNIST_MEAN, MNIST_STD, create
from alva.models.wrapper import Normalized
from alva.models.zoo import available, card, load, save

__all__ = ["ARCHITECTURES", "MNIST_MEAN", "MNIST_STD", "Normalized", "available", "card", "create", "load", "save"]

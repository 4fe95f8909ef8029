"""Classifiers, generators, the normalisation wrapper and the zoo of shipped weights."""

from alva.models.classifiers import ARCHITECTURES, MNIST_MEAN, MNIST_STD, create
from alva.models.gan import ACCritic, ACGenerator, Generator, load_generator, save_generator
from alva.models.wrapper import Normalized
from alva.models.zoo import available, card, load, save

__all__ = ["ARCHITECTURES", "MNIST_MEAN", "MNIST_STD", "ACCritic", "ACGenerator", "Generator", "Normalized",
           "available", "card", "create", "load", "load_generator", "save", "save_generator"]

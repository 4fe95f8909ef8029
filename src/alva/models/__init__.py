"""Classifiers, generators, the normalisation wrapper, the zoo of shipped weights and loading any of them."""

from alva.models.classifiers import ARCHITECTURES, MNIST_MEAN, MNIST_STD, create
from alva.models.factory import ModelLoadError, is_factory_spec
from alva.models.gan import ACCritic, ACGenerator, Generator, load_generator, save_generator
from alva.models.loading import ModelIO, build, check_fits, load, model_io
from alva.models.wrapper import Normalized
from alva.models.zoo import available, card, save

__all__ = ["ARCHITECTURES", "MNIST_MEAN", "MNIST_STD", "ACCritic", "ACGenerator", "Generator", "ModelIO",
           "ModelLoadError", "Normalized", "available", "build", "card", "check_fits", "create", "is_factory_spec",
           "load", "load_generator", "model_io", "save", "save_generator"]

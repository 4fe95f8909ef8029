"""Data: MNIST from checked IDX files, seeded loaders and fixed evaluation subsets."""

from alva.data.loaders import epoch_generator, fixed_subset, make_loader
from alva.data.mnist import ENV_VAR, DataError, default_root, load_mnist

__all__ = ["DataError", "ENV_VAR", "default_root", "epoch_generator", "fixed_subset", "load_mnist", "make_loader"]

"""Data: MNIST from checked IDX files, multi-label MNIST grids, seeded loaders and fixed evaluation subsets."""

from alva.data.loaders import epoch_generator, fixed_subset, make_loader
from alva.data.mnist import ENV_VAR, DataError, default_root, load_mnist
from alva.data.multilabel import MultiLabelLayout, make_multilabel_mnist, make_multilabel_mnist_with_layout

__all__ = ["DataError", "ENV_VAR", "MultiLabelLayout", "default_root", "epoch_generator", "fixed_subset", "load_mnist",
           "make_loader", "make_multilabel_mnist", "make_multilabel_mnist_with_layout"]

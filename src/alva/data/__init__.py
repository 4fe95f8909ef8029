"""Data: one registry of data sources (:func:`load`), MNIST from checked IDX files, multi-label MNIST grids,
CIFAR binaries, arrays and image folders, seeded loaders, fixed evaluation subsets and export."""

from alva.data.dataset import ImageData, ModelDataMismatch, check_model_fit
from alva.data.export import export
from alva.data.loaders import epoch_generator, fixed_subset, make_loader, subset_indices
from alva.data.mnist import ENV_VAR, DataError, default_root, load_mnist
from alva.data.multilabel import MultiLabelLayout, make_multilabel_mnist, make_multilabel_mnist_with_layout
from alva.data.registry import LoadOptions, Source, load, register, spec_forms

__all__ = ["DataError", "ENV_VAR", "ImageData", "LoadOptions", "ModelDataMismatch", "MultiLabelLayout", "Source",
           "check_model_fit", "default_root", "epoch_generator", "export", "fixed_subset", "load", "load_mnist",
           "make_loader", "make_multilabel_mnist", "make_multilabel_mnist_with_layout", "register", "spec_forms",
           "subset_indices"]

"""Dataset loaders: files on disk -> ArrayData (numpy only; no torch here)."""

from __future__ import annotations

from netspec.data.arraydata import ArrayData
from netspec.data.arrays import load_arrays
from netspec.data.builtin import BUILTIN_NAMES, load_builtin
from netspec.data.cifar import load_cifar10_dir
from netspec.data.folder import IMAGE_SUFFIXES, load_image_folder
from netspec.data.idx import load_idx
from netspec.data.mask_folder import load_mask_folder
from netspec.data.masks import mask_indices
from netspec.data.mnist import download_mnist, load_mnist_dir
from netspec.data.shapes import SHAPE_CLASSES, make_shapes
from netspec.data.split import split_arrays
from netspec.data.stats import dataset_stats
from netspec.data.table import load_csv

__all__ = [
    "BUILTIN_NAMES",
    "IMAGE_SUFFIXES",
    "SHAPE_CLASSES",
    "ArrayData",
    "dataset_stats",
    "download_mnist",
    "load_arrays",
    "load_builtin",
    "load_cifar10_dir",
    "load_csv",
    "load_idx",
    "load_image_folder",
    "load_mask_folder",
    "load_mnist_dir",
    "make_shapes",
    "mask_indices",
    "split_arrays",
]

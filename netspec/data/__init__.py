"""Dataset loaders: files on disk -> ArrayData (numpy only; no torch here)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from netspec.lazy import lazy_attributes

if TYPE_CHECKING:
    from netspec.data.arraydata import ArrayData
    from netspec.data.arrays import load_arrays
    from netspec.data.builtin import BUILTIN_NAMES, load_builtin
    from netspec.data.cifar import load_cifar10_dir
    from netspec.data.folder import IMAGE_SUFFIXES, load_image_folder
    from netspec.data.idx import load_idx
    from netspec.data.mask_folder import load_mask_folder
    from netspec.data.masks import mask_indices
    from netspec.data.mnist import download_mnist, load_mnist_dir
    from netspec.data.shape_scenes import SHAPE_CLASSES, make_shapes
    from netspec.data.split import split_arrays
    from netspec.data.stats import dataset_stats
    from netspec.data.table import load_csv

# Each public name and the module it lives in, imported on first use (PEP 562): `netspec predict`
# needs `netspec.data.preprocess`, `scenes` and `tiff`, not every loader (Pillow, CSV, MNIST...).
_LAZY = {
    "ArrayData": "netspec.data.arraydata",
    "load_arrays": "netspec.data.arrays",
    "BUILTIN_NAMES": "netspec.data.builtin",
    "load_builtin": "netspec.data.builtin",
    "load_cifar10_dir": "netspec.data.cifar",
    "IMAGE_SUFFIXES": "netspec.data.folder",
    "load_image_folder": "netspec.data.folder",
    "load_idx": "netspec.data.idx",
    "load_mask_folder": "netspec.data.mask_folder",
    "mask_indices": "netspec.data.masks",
    "download_mnist": "netspec.data.mnist",
    "load_mnist_dir": "netspec.data.mnist",
    "SHAPE_CLASSES": "netspec.data.shape_scenes",
    "make_shapes": "netspec.data.shape_scenes",
    "split_arrays": "netspec.data.split",
    "dataset_stats": "netspec.data.stats",
    "load_csv": "netspec.data.table",
}

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


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())

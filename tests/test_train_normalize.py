"""The trainer's torch Normalizer equals netspec.data.preprocess.apply_values, the numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from netspec.backends.training.normalize import Normalizer
from netspec.data.preprocess import Preprocessing, apply_values

CASES = {
    "identity": Preprocessing((3, 4, 5), (3, 4, 5)),
    "scale": Preprocessing((3, 4, 5), (3, 4, 5), scale=1 / 255),
    "mean_std": Preprocessing(
        (3, 4, 5), (3, 4, 5), scale=1 / 255, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3)
    ),
    "per_sample": Preprocessing((3, 4, 5), (3, 4, 5), scale=0.5, per_sample=True),
    "reshape": Preprocessing((48,), (3, 4, 4), scale=1 / 255, mean=(1.0, 2.0, 3.0), std=(2, 3, 4)),
    "reshape_per_sample": Preprocessing((1, 64), (8, 8), per_sample=True),
    "table": Preprocessing((6,), (6,), mean=(0.0, 1, 2, 3, 4, 5), std=(1.0, 2, 3, 4, 5, 6)),
}


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("case", sorted(CASES))
def test_normalizer_equals_apply_values(case: str, dtype: type) -> None:
    pre = CASES[case]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(5, *pre.raw_shape)).astype(dtype)
    want = apply_values(x, pre.to_dict(), pre.input_shape)
    got = Normalizer(pre, torch.device("cpu"))(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape == (5, *pre.input_shape)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

"""The value steps of preprocessing (scale, mean/std, per-sample, reshape) as tensor ops on the device."""

from __future__ import annotations

import torch

from netspec.data.preprocess import PER_SAMPLE_DDOF, PER_SAMPLE_EPS, Preprocessing


class Normalizer:
    """x * scale, then per-channel (x - mean) / std or per-sample standardization, then reshape."""

    def __init__(self, pre: Preprocessing, device: torch.device) -> None:
        self.pre = pre
        self.shape = tuple(pre.input_shape)
        view = (1, -1) + (1,) * (len(pre.raw_shape) - 1)
        self.mean = torch.tensor(pre.mean, device=device).view(view) if pre.mean else None
        self.std = torch.tensor(pre.std, device=device).view(view) if pre.std else None
        # Regression targets, one value per output (the last axis of y and of the output).
        self.t_mean = self.t_std = None
        if pre.target_mean is not None and pre.target_std is not None:
            self.t_mean = torch.tensor(pre.target_mean, device=device)
            self.t_std = torch.tensor(pre.target_std, device=device)

    def targets(self, y: torch.Tensor) -> torch.Tensor:
        """Regression targets in the units the network learns (standardized), else y."""
        return y if self.t_mean is None else (y - self.t_mean) / self.t_std

    def units(self, y: torch.Tensor) -> torch.Tensor:
        """Outputs or targets back in the data's units, for metrics (inverse of `targets`)."""
        return y if self.t_mean is None else y * self.t_std + self.t_mean

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.pre.scale != 1.0:
            x = x * self.pre.scale
        if self.mean is not None:
            x = (x - self.mean) / self.std
        elif self.pre.per_sample:
            flat = x.flatten(1)
            std = flat.std(1, correction=PER_SAMPLE_DDOF, keepdim=True)
            x = ((flat - flat.mean(1, keepdim=True)) / (std + PER_SAMPLE_EPS)).view_as(x)
        if None in self.shape:  # a dynamic time axis: the data has the input's layout already
            return x
        return x.reshape(x.shape[0], *self.shape)

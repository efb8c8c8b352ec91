"""batchnorm: per-channel batch normalization over axis 0 of a per-sample [C, ...] input."""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

from typing import Annotated, ClassVar

from pydantic import Field

from netspec.layers.base import Layer, Weight, check_rank
from netspec.shapes import Shape


class BatchNorm(Layer):
    """Keras conventions: `momentum` weighs the running statistic (0.9 = torch's 0.1).

    The default is 0.9, torch's, not Keras' 0.99: with 0.99 the running statistics lag the
    weights by ~100 steps, and cifar_cnn's test accuracy after 12 epochs of 29 steps was 0.320
    ± 0.034 against 0.462 ± 0.016 with 0.9 (8 seeds, benchmarks/bench_accuracy.py).

    Counts 4 numbers per channel, as Keras does: gamma and beta are trainable, the running
    mean and variance are not.
    """

    kind: ClassVar[str] = "batchnorm"

    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        0.9,
        description="Weight of the running statistic (Keras convention: 0.9 is torch's 0.1).",
    )
    eps: Annotated[float, Field(gt=0.0)] = Field(1e-3, description="Added to the variance.")

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        check_rank(self, inputs[0], (1, 2, 3))
        return inputs[0]

    def weights(self, inputs: list[Shape], out: Shape) -> dict[str, Weight]:
        c = (inputs[0][0],)
        return {
            "weight": Weight(c),  # gamma
            "bias": Weight(c),  # beta
            "running_mean": Weight(c, trainable=False),
            "running_var": Weight(c, trainable=False),
        }

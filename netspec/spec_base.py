"""What the `train:` section's pydantic models share: strict sections, fractions, sizes, wording."""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]
PositiveFloat = Annotated[float, Field(gt=0.0)]
Size = Annotated[list[PositiveInt], Field(min_length=2, max_length=2)]
# Relative paths are relative to the spec file's folder.
PATH = "The data's file or folder (relative: to the spec file's folder)."
SPLIT = "Which of the dataset's own files to read: train or test."
TEST = "Fraction held out for the test split (0: use `test_path`)."


class Section(BaseModel):
    """A section of the spec: unknown keys and loose types are errors; built on first use."""

    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)

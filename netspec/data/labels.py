"""What a data set's labels are: the task they make, and the mask label that counts nowhere."""

from __future__ import annotations

from typing import Literal

Task = Literal["multiclass", "binary", "regression", "segmentation"]
TASKS: tuple[str, ...] = ("multiclass", "binary", "regression", "segmentation")
# A mask pixel with this label counts in no loss and no metric (unlabelled, or scored elsewhere).
IGNORE = -1

"""Strict JSON for everything netspec prints or writes: NaN and infinities become null, never `NaN`."""

from __future__ import annotations

import json
import math
from typing import Any


def finite(v: Any) -> Any:
    """The value with every non-finite float (NaN, ±inf) replaced by None, in dicts and lists."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [finite(x) for x in v]
    return v


def dumps(v: Any, indent: int | None = 2, **kwargs: Any) -> str:
    """json.dumps of `finite(v)` with allow_nan=False: always a document any JSON parser reads."""
    return json.dumps(finite(v), indent=indent, allow_nan=False, **kwargs)

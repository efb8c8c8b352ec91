"""A CSV table's columns: its header checked, the target and feature columns found, and the
ArrayData its plan gives (shared by load_csv, the streamed tables and the texts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from netspec.data._common import data_error, did_you_mean, plain
from netspec.data.arraydata import ArrayData
from netspec.data.csvtext import number
from netspec.data.table_cells import MISSING, TablePlan


def check_header(header: list[str], line: int, path: Path, delimiter: str) -> None:
    """A header row of unique, non-empty names, not a row of data (errors name `line`)."""
    # A data row may have missing cells (5.1,3.5,,0.2): the rest being numbers makes it data.
    present = [h for h in header if h not in MISSING]
    if present and all(number(h, delimiter) is not None for h in present):
        raise data_error(
            f"the first row ({plain(header[:5])}{', ...' if len(header) > 5 else ''}) looks like "
            "data; expected a header row naming the columns",
            path,
            hint="add a first line such as: feature_1,feature_2,label",
            line=line,
        )
    seen: set[str] = set()
    for name in header:
        if not name or name in seen:
            what = "an empty" if not name else f"a duplicate ({name!r})"
            raise data_error(
                f"header has {what} column name; expected unique names", path, line=line
            )
        seen.add(name)


def column(header: list[str], name: str, path: Path, role: str) -> int:
    """The index of column `name` (a `role` column: target, feature, text, label)."""
    if name not in header:
        raise data_error(
            f"unknown {role} column {name!r}{did_you_mean(name, header)}; "
            f"available columns: {plain(header)}",
            path,
        )
    return header.index(name)


def used_columns(
    header: list[str], target: str, features: list[str] | None, path: Path
) -> list[int]:
    """The target's column index, then the features' (all other columns unless named)."""
    t_col = column(header, target, path, "target")
    if features is None:
        f_cols = [i for i in range(len(header)) if i != t_col]
    else:
        f_cols = [column(header, name, path, "feature") for name in features]
        if t_col in f_cols:
            raise data_error(f"target column {target!r} is also listed as a feature", path)
        if len(set(f_cols)) != len(f_cols):
            raise data_error(f"features list a column twice: {plain(features)}", path)
    if not f_cols:
        raise data_error(f"no feature columns: the file only has the target {target!r}", path)
    return [t_col, *f_cols]


def table_data(
    path: Path, target: str, plan: TablePlan, x: Any, y: np.ndarray, notes: list[str]
) -> ArrayData:
    """A CSV table's ArrayData: its features x (in memory or streamed) and labels y, with the
    plan's classes, feature names and columns."""
    return ArrayData(
        x=x,
        y=y,
        classes=plan.classes,
        source=f"CSV {path} (target {target!r})",
        notes=tuple(notes),
        feature_names=plan.feature_names,
        table=plan.table,
    )

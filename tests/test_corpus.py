"""The corpus of odd real-world files (tests/corpus/make_corpus.py): each is read correctly (its
decoded values checked) or refused with one DataError naming the file and what to do.

The CLI turns such a DataError into `FILE: error: ...` and exit 2 (tests/test_errors.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from corpus.make_corpus import CASES, Case, write_all

from netspec.errors import DataError


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every case's files, generated once per session."""
    return write_all(tmp_path_factory.mktemp("corpus"))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus(case: Case, corpus: dict[str, Path]) -> None:
    path = corpus[case.name]
    if case.check is not None:
        case.check(case.load(path))
        return
    with pytest.raises(DataError) as err:
        case.load(path)
    text = str(err.value)
    folder = path if path.is_dir() else path.parent
    where = str(folder / case.names) if case.names else ""
    assert where in text, text  # the file itself (and its line, where it has one)
    for needle in case.says:
        assert needle in text, text
    assert "Traceback" not in text


IMAGES = [c for c in CASES if c.name.startswith("image-") and c.check is not None]


@pytest.mark.parametrize("case", IMAGES, ids=[c.name for c in IMAGES])
def test_predict_decodes_corpus_images_as_training_did(case: Case, corpus: dict[str, Path]) -> None:
    """`netspec predict` reads each odd image to the very values the training loader gave."""
    pytest.importorskip("onnxruntime")
    from netspec.backends.predict.inputs import read_image
    from netspec.backends.predict.model import ModelInfo
    from netspec.data.preprocess import Preprocessing

    data = case.load(corpus[case.name])
    first = sorted((corpus[case.name] / "a").iterdir())[0]
    c, h, w = data.x.shape[1:]
    pre = Preprocessing(
        input_shape=(c, h, w), raw_shape=(c, h, w), channel_order="L" if c == 1 else "RGB"
    )
    info = ModelInfo(
        first, "input", "tensor(float)", None, (c, h, w), "y", (2,), (c, h, w), pre=pre
    )
    assert read_image(first, info).tolist() == data.x[0].astype("float32").tolist()


TABLES = [c for c in CASES if c.name.startswith("csv-") and c.check is not None]


@pytest.mark.parametrize("case", TABLES, ids=[c.name for c in TABLES])
def test_predict_reads_corpus_tables_as_training_did(case: Case, corpus: dict[str, Path]) -> None:
    """`netspec predict` reads each CSV dialect's rows to the very features training read."""
    import numpy as np

    from netspec.backends.predict.model import ModelInfo
    from netspec.backends.predict.rows import csv_rows

    path = corpus[case.name]
    data = case.load(path)
    f = data.x.shape[1]
    info = ModelInfo(
        path, "input", "tensor(float)", None, (f,), "y", (2,), (f,),
        features=data.feature_names, table=data.table.to_dict(),
    )  # fmt: skip
    rows = [x for _, x in csv_rows(path, info)]
    assert np.array_equal(np.stack(rows), data.x)

"""Tests for netspec.classreport: exact by hand on small cases, and against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest

from netspec.classreport import (
    auc,
    binary_scores,
    class_report,
    confident_mistakes,
    confusion,
    render_report,
    roc_curve,
)

# 3 classes, 8 samples; class 2 is never predicted (precision 0 by convention).
TRUE = np.array([0, 0, 0, 1, 1, 2, 2, 1])
PRED = np.array([0, 1, 0, 1, 1, 0, 1, 1])


def test_confusion_and_report_by_hand() -> None:
    cm = confusion(TRUE, PRED, 3)
    np.testing.assert_array_equal(cm, [[2, 1, 0], [0, 3, 0], [1, 1, 0]])
    report = class_report(cm, ["a", "b", "c"])
    rows = {r["class"]: r for r in report["classes"]}
    # a: tp 2, predicted 3, true 3; b: tp 3, predicted 5, true 3; c: tp 0, predicted 0, true 2.
    assert rows["a"] == pytest.approx(
        {"class": "a", "precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3}
    )
    assert rows["b"]["precision"] == pytest.approx(3 / 5)
    assert rows["b"]["recall"] == 1.0
    assert rows["b"]["f1"] == pytest.approx(2 * 0.6 / 1.6)
    assert rows["c"] == {"class": "c", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert report["samples"] == 8 and report["accuracy"] == pytest.approx(5 / 8)
    assert report["macro"]["recall"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert report["weighted"]["recall"] == pytest.approx(5 / 8)  # weighted recall = accuracy
    assert report["confusion"] == cm.tolist()


def test_report_matches_scikit_learn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for k in (2, 3, 10):
        true = rng.integers(0, k, 300)
        pred = np.where(rng.random(300) < 0.6, true, rng.integers(0, k - 1, 300))
        if k > 2:
            true[true == k - 1] = 0  # class k-1: predicted, never true (recall 0, support 0)
        cm = confusion(true, pred, k)
        np.testing.assert_array_equal(cm, metrics.confusion_matrix(true, pred, labels=range(k)))
        names = [f"c{i}" for i in range(k)]
        ours = class_report(cm, names)
        theirs = metrics.classification_report(
            true, pred, labels=range(k), target_names=names, output_dict=True, zero_division=0
        )
        for row in ours["classes"]:
            ref = theirs[row["class"]]
            assert row["support"] == ref["support"]
            for key, ref_key in (("precision",) * 2, ("recall",) * 2, ("f1", "f1-score")):
                assert row[key] == pytest.approx(ref[ref_key], abs=1e-12)
        for avg in ("macro", "weighted"):
            for key, ref_key in (("precision",) * 2, ("recall",) * 2, ("f1", "f1-score")):
                assert ours[avg][key] == pytest.approx(theirs[f"{avg} avg"][ref_key], abs=1e-12)
        assert ours["accuracy"] == pytest.approx(metrics.accuracy_score(true, pred))


def test_roc_and_auc_by_hand() -> None:
    # Scores 0.9 (pos), 0.8 (neg), 0.8 (pos), 0.3 (neg): the tie makes one diagonal step.
    fpr, tpr, thresholds = roc_curve(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.8, 0.3]))
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 1, 1])
    assert thresholds[0] == np.inf and list(thresholds[1:]) == [0.9, 0.8, 0.3]
    assert auc(fpr, tpr) == pytest.approx(0.5 * 0.75 + 0.5 * 1)  # 0.875: 7 of 8 pairs ordered


def test_roc_matches_scikit_learn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    true = rng.integers(0, 2, 500)
    scores = np.round(0.3 * true + rng.random(500), 2)  # rounded: many ties
    fpr, tpr, thresholds = roc_curve(true, scores)
    ref_fpr, ref_tpr, ref_thr = metrics.roc_curve(true, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)
    np.testing.assert_allclose(thresholds[1:], ref_thr[1:])
    assert auc(fpr, tpr) == pytest.approx(metrics.roc_auc_score(true, scores), abs=1e-12)


def test_binary_scores_shapes() -> None:
    p = np.array([0.2, 0.7])
    np.testing.assert_array_equal(binary_scores(p), p)
    np.testing.assert_array_equal(binary_scores(p[:, None]), p)
    np.testing.assert_array_equal(binary_scores(np.stack([1 - p, p], 1)), p)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        binary_scores(np.zeros((2, 3)))


def test_confident_mistakes_most_confident_first() -> None:
    probs = np.array(
        [
            [0.9, 0.1],  # right
            [0.6, 0.4],  # wrong (true 1), confidence 0.6
            [0.05, 0.95],  # wrong (true 0), 0.95
            [0.3, 0.7],  # wrong (true 0), 0.7
            [0.2, 0.8],  # right
        ]
    )
    true = np.array([0, 1, 0, 0, 1])
    assert confident_mistakes(true, probs, 10).tolist() == [2, 3, 1]
    assert confident_mistakes(true, probs, 2).tolist() == [2, 3]
    assert confident_mistakes(true[[0, 4]], probs[[0, 4]], 5).tolist() == []


def test_render_report_is_a_table() -> None:
    text = render_report(class_report(confusion(TRUE, PRED, 3), ["a", "bee", "c"]))
    lines = text.splitlines()
    assert lines[0].split() == ["precision", "recall", "f1", "support"]
    assert lines[2].split() == ["a", "0.6667", "0.6667", "0.6667", "3"]
    assert lines[4].split() == ["c", "0.0000", "0.0000", "0.0000", "2"]
    assert lines[-3].split() == ["accuracy", "0.6250", "8"]
    assert lines[-1].split()[:2] == ["weighted", "avg"]
    assert len({len(line) for line in lines if line}) == 1  # columns line up


def test_bad_labels_are_refused() -> None:
    with pytest.raises(ValueError, match=r"expected 0\.\.2"):
        confusion(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="2 labels but pred has 3"):
        confusion(np.array([0, 1]), np.array([0, 1, 1]), 3)
    with pytest.raises(ValueError, match="for 2 classes"):
        class_report(np.zeros((3, 3)), ["a", "b"])

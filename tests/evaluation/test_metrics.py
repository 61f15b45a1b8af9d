"""``rsinfer.evaluation.metrics``: ISPRS metrics of a confusion matrix, the result and its JSON report."""

import json
import math
import os
from fractions import Fraction

import numpy as np
import pytest

from rsinfer.errors import RsinferError
from rsinfer.evaluation import EvalResult, confusion_metrics, write_json


def test_confusion_metrics_match_a_hand_computed_matrix():
    cm = np.array(
        [
            [50, 2, 3, 0],
            [5, 30, 0, 0],
            [0, 0, 0, 0],  # class 2: never true, predicted 3 times -> IoU 0, counts in the means
            [0, 0, 0, 0],
        ]
    )  # class 3: absent from truth and prediction -> NaN, left out
    m = confusion_metrics(cm)
    # class 0: TP 50, FP 5, FN 5; class 1: TP 30, FP 2, FN 5
    iou = [Fraction(50, 60), Fraction(30, 37), Fraction(0)]
    f1 = [Fraction(100, 110), Fraction(60, 67), Fraction(0)]
    assert m["iou"][:3] == pytest.approx([float(v) for v in iou], rel=1e-15)
    assert m["f1"][:3] == pytest.approx([float(v) for v in f1], rel=1e-15)
    assert math.isnan(m["iou"][3]) and math.isnan(m["f1"][3])
    assert m["miou"] == pytest.approx(float(sum(iou) / 3), rel=1e-15)
    assert m["mean_f1"] == pytest.approx(float(sum(f1) / 3), rel=1e-15)
    assert m["oa"] == pytest.approx(80 / 90, rel=1e-15)
    assert m["pixels"] == 90
    assert m["support"].tolist() == [55, 35, 0, 0] and m["predicted"].tolist() == [55, 32, 3, 0]
    # an excluded class is NaN and leaves the means; OA is unchanged
    ex = confusion_metrics(cm, exclude=(2,))
    assert math.isnan(ex["iou"][2]) and ex["miou"] == pytest.approx(float(sum(iou[:2]) / 2), rel=1e-15)
    assert ex["oa"] == m["oa"]
    empty = confusion_metrics(np.zeros((3, 3), dtype=np.int64))
    assert all(math.isnan(empty[k]) for k in ("miou", "mean_f1", "oa"))


@pytest.fixture
def result():
    cm = np.array([[8, 2, 0], [1, 9, 0], [0, 0, 0]], dtype=np.int64)
    m = confusion_metrics(cm)
    return EvalResult(
        pred="p.tif",
        labels="t.tif",
        confusion_matrix=cm,
        class_names=("a", "b", "c"),
        ignore=(),
        iou=m["iou"],
        f1=m["f1"],
        miou=m["miou"],
        oa=m["oa"],
        mean_f1=m["mean_f1"],
        pixels=m["pixels"],
        support=m["support"],
        predicted=m["predicted"],
    )


def test_json_report_has_one_line_per_matrix_row_and_null_for_undefined_scores(result):
    text = result.to_json()
    report = json.loads(text)
    assert report == json.loads(json.dumps(result.to_dict()))
    assert report["iou"][2] is None and report["f1"][2] is None  # class c: absent from both
    assert "    [8, 2, 0],\n    [1, 9, 0],\n    [0, 0, 0]\n" in text


def test_write_json_replaces_the_file_through_a_partial(result, tmp_path):
    out = tmp_path / "m.json"
    out.write_text("old")
    write_json(result, out)
    assert json.loads(out.read_text())["pixels"] == 20
    assert os.listdir(tmp_path) == ["m.json"]  # no partial left
    with pytest.raises(RsinferError, match="cannot write"):
        write_json(result, tmp_path)  # a directory is not replaced
    with pytest.raises(RsinferError, match="cannot write"):
        write_json(result, tmp_path / "missing" / "m.json")
    assert os.listdir(tmp_path) == ["m.json"]

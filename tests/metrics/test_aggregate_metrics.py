"""aggregate(): NaN-aware statistics per group against numpy."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from raysegment.metrics import STATISTICS, aggregate, case_metrics


@pytest.fixture
def table():
    return pd.DataFrame(
        {
            "case": ["a", "b", "c", "d", "a", "b", "c", "d"],
            "class": ["wt"] * 4 + ["et"] * 4,
            "dice": [0.9, 0.8, 0.7, 0.2, 1.0, 0.0, 0.5, 0.6],
            "hd95": [2.0, 4.0, np.nan, 10.0, 0.0, np.nan, np.nan, 3.0],
        }
    )


def test_statistics_per_class(table):
    out = aggregate(table, metrics=["dice", "hd95"])
    assert list(out.columns) == ["class", "metric", *STATISTICS]
    assert list(zip(out["class"], out["metric"])) == [("et", "dice"), ("et", "hd95"), ("wt", "dice"), ("wt", "hd95")]
    wt_hd = out[(out["class"] == "wt") & (out["metric"] == "hd95")].iloc[0]
    values = np.array([2.0, 4.0, 10.0])  # the NaN is left out
    assert wt_hd["mean"] == pytest.approx(values.mean())
    assert wt_hd["std"] == pytest.approx(values.std(ddof=1))
    assert wt_hd["median"] == pytest.approx(4.0)
    for name, q in [("p5", 5), ("p25", 25), ("p75", 75), ("p95", 95)]:
        assert wt_hd[name] == pytest.approx(np.percentile(values, q))
    assert (wt_hd["count"], wt_hd["n_nan"]) == (4, 1)
    et_dice = out[(out["class"] == "et") & (out["metric"] == "dice")].iloc[0]
    assert et_dice["mean"] == pytest.approx(0.525) and et_dice["n_nan"] == 0


def test_overall_and_default_metrics():
    rng = np.random.default_rng(0)
    rows = []
    for case in range(3):
        pred, target = rng.random((2, 8, 8)) > 0.5, rng.random((2, 8, 8)) > 0.5
        rows += [{"case": case, **row} for row in case_metrics(pred, target, (1.0, 1.0), class_names=["x", "y"])]
    df = pd.DataFrame(rows)
    overall = aggregate(df, by=())
    assert list(overall["metric"])[:3] == ["dice", "iou", "precision"]
    assert "volume_true" in set(overall["metric"]) and (overall["count"] == 6).all()
    dice = overall.set_index("metric").loc["dice", "mean"]
    assert dice == pytest.approx(df["dice"].mean())


def test_all_nan_group(table):
    table["hd95"] = np.nan
    row = aggregate(table, by=(), metrics=["hd95"]).iloc[0]
    assert math.isnan(row["mean"]) and (row["count"], row["n_nan"]) == (8, 8)


def test_unknown_column(table):
    with pytest.raises(KeyError, match="assd"):
        aggregate(table, metrics=["assd"])

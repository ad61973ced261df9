"""``infer --overlays N``: the image and predicted mask of the first N cases without ground truth, as PNGs."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from raysegment.cli import app
from raysegment.infer import case_key
from raysegment.infer.write import overlay_cases
from raysegment.manifest import write_manifest

pytestmark = pytest.mark.slow


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_overlay_cases_are_the_first_unlabeled_ones_in_manifest_order():
    manifest = pd.DataFrame({"case_id": ["a", "b", "c", "d", "e"], "mask_uri": ["m", None, "m", None, None]})
    assert overlay_cases(manifest, 2) == {"b", "d"}
    assert overlay_cases(manifest, 10) == {"b", "d", "e"} and overlay_cases(manifest, 0) == frozenset()


def test_infer_draws_overlays_of_unlabeled_cases(lgg, tmp_path, ray_session):
    df = lgg["df"].copy()
    first = df["patient_id"] == df["patient_id"].iloc[0]  # one patient's slices without masks: new scans
    df.loc[first, "mask_uri"], df.loc[first, "split"] = None, "unlabeled"
    manifest, out = str(tmp_path / "manifest.parquet"), tmp_path / "out"
    write_manifest(df, manifest)
    result = CliRunner().invoke(app, ["infer", "--model", lgg["model"], "--manifest", manifest, "--out", str(out),
                                      "--batch-size", "4", "--overlays", "3", "--json"])
    assert result.exit_code == 0, result.output
    drawn = df.loc[first, "case_id"].head(3).tolist()
    records = {cid: json.loads((out / "records" / f"{case_key(cid)}.json").read_text()) for cid in df["case_id"]}
    assert {cid for cid, record in records.items() if "overlay" in record} == set(drawn)
    assert sorted(p.name for p in (out / "overlays").iterdir()) == sorted(f"{case_key(cid)}.png" for cid in drawn)
    for cid in drawn:
        assert records[cid]["overlay"] == f"overlays/{case_key(cid)}.png"
        width, height = _png_size((out / records[cid]["overlay"]).read_bytes())
        assert 1.5 * height < width < 2.5 * height  # two panels, image and prediction: no ground truth to show

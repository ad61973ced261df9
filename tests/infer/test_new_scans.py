"""The nightly manifest lists exactly the archive cases without a completion record."""

from __future__ import annotations

from typer.testing import CliRunner

from raysegment.cli import app
from raysegment.infer.layout import case_key, write_record
from raysegment.infer.new_scans import new_scans
from raysegment.manifest import read_manifest
from raysegment.sample_data import make_sample_data


def test_new_scans_leaves_out_processed_cases(tmp_path):
    archive = str(tmp_path / "archive")
    make_sample_data(archive, "lgg", patients=2, slices=3, size=32)
    everything = new_scans(archive, "lgg")
    assert len(everything) == 6 and set(everything["split"]) == {"unlabeled"} and everything["mask_uri"].notna().all()
    done = list(everything["case_id"][:2])
    for i, case in enumerate(done):  # records of two earlier nights
        write_record(str(tmp_path / "nightly" / f"date=2026-01-0{i + 1}"), case_key(case), {"case_id": case})
    (tmp_path / "nightly" / "date=2026-01-01" / "masks").mkdir()
    (tmp_path / "nightly" / "date=2026-01-01" / "masks" / f"{case_key(everything['case_id'][3])}.json").write_text("{}")

    result = CliRunner().invoke(app, ["manifest", "new-scans", archive, "--kind", "lgg", "--processed", str(tmp_path / "nightly"),
                                      "--out", str(tmp_path / "manifests" / "date={date}" / "manifest.parquet"), "--date", "2026-01-03"])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(str(tmp_path / "manifests" / "date=2026-01-03" / "manifest.parquet"))
    assert sorted(manifest["case_id"]) == sorted(set(everything["case_id"]) - set(done))
    assert "4 new lgg cases" in result.output

    for case in everything["case_id"]:
        write_record(str(tmp_path / "nightly" / "date=2026-01-03"), case_key(case), {"case_id": case})
    assert new_scans(archive, "lgg", str(tmp_path / "nightly"), str(tmp_path / "none.parquet")).empty
    assert read_manifest(str(tmp_path / "none.parquet")).empty


def test_empty_archive_is_an_error(tmp_path):
    (tmp_path / "archive").mkdir()
    result = CliRunner().invoke(app, ["manifest", "new-scans", str(tmp_path / "archive"), "--kind", "lgg", "--out", str(tmp_path / "m.parquet")])
    assert result.exit_code == 2 and "no lgg scans found" in result.output

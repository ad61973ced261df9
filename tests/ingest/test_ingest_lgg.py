"""LGG importer on a generated copy of the Kaggle kaggle_3m layout, with its quirks."""

from __future__ import annotations

import os
import shutil

import pytest
from typer.testing import CliRunner

from raysegment.cli import app
from raysegment.ingest import ingest
from raysegment.manifest import read_manifest
from raysegment.sample_data import make_sample_data
from raysegment.splits import SplitConfig


@pytest.fixture(scope="module")
def lgg_root(tmp_path_factory):
    out = tmp_path_factory.mktemp("lgg")
    info = make_sample_data(str(out), "lgg", patients=10, slices=6, size=32)
    root = info.root
    patients = sorted(d for d in os.listdir(root) if d.startswith("TCGA"))
    # Quirks: an image whose mask is missing, a mask whose image is missing, a stray file from
    # another patient, and a TIFF outside any patient folder.
    os.remove(os.path.join(root, patients[0], f"{patients[0]}_3_mask.tif"))
    os.remove(os.path.join(root, patients[1], f"{patients[1]}_2.tif"))
    shutil.copy(os.path.join(root, patients[3], f"{patients[3]}_1.tif"), os.path.join(root, patients[2], f"{patients[3]}_1.tif"))
    shutil.copy(os.path.join(root, patients[4], f"{patients[4]}_1.tif"), os.path.join(root, "loose.tif"))
    return root, patients


def test_pairs_only_matching_files_and_reports_the_rest(lgg_root, tmp_path):
    root, patients = lgg_root
    result = ingest("lgg", root, str(tmp_path / "m.parquet"))
    df = result.manifest
    assert len(df) == 10 * 6 - 2
    assert f"{patients[0]}_3" not in set(df["case_id"]) and f"{patients[1]}_2" not in set(df["case_id"])
    problems = "\n".join(result.problems)
    assert f"{patients[0]}_3.tif: image without a mask" in problems
    assert f"{patients[1]}_2_mask.tif: mask without an image" in problems
    assert "does not follow" in problems and "outside a TCGA" in problems
    assert len(result.problems) == 4
    # every image is paired with the mask of the same patient and slice number
    for _, row in df.iterrows():
        assert row["mask_uri"] == row["image_uris"][0].replace(".tif", "_mask.tif")
        assert row["case_id"].startswith(row["patient_id"])
    assert list(df.iloc[0]["channels"]) == ["pre-contrast", "flair", "post-contrast"]
    assert set(df["format"]) == {"tiff"} and set(df["level"]) == {"slice"}
    # data.csv and the README are not scans
    assert not any(u.endswith((".csv", ".md")) for uris in df["image_uris"] for u in uris)


def test_foreground_flags_match_the_masks(lgg_root):
    import tifffile

    root, _ = lgg_root
    df = ingest("lgg", root).manifest
    for _, row in df.sample(12, random_state=0).iterrows():
        assert bool(tifffile.imread(row["mask_uri"]).any()) == row["has_foreground"]


def test_split_has_no_patient_leakage_and_positives_everywhere(lgg_root):
    root, _ = lgg_root
    df = ingest("lgg", root, split=SplitConfig(0.6, 0.2, 0.2, seed=1)).manifest
    assert (df.groupby("patient_id")["split"].nunique() == 1).all()
    assert df.groupby("split")["has_foreground"].any().all()
    assert set(df["split"]) == {"train", "val", "test"}


def test_cli_ingest_writes_manifest_and_prints_summary(lgg_root, tmp_path):
    root, _ = lgg_root
    out = tmp_path / "cli.parquet"
    result = CliRunner().invoke(app, ["ingest", "lgg", root, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "patients 10" in result.output and "problems 4" in result.output
    assert len(read_manifest(str(out))) == 58


def test_ingest_from_s3(s3_bucket, tmp_path):
    info = make_sample_data(f"{s3_bucket}/raw", "lgg", patients=3, slices=3, size=32)
    result = ingest("lgg", info.root, f"{s3_bucket}/manifests/lgg.parquet")
    assert len(result.manifest) == 9
    assert result.manifest["image_uris"].iloc[0][0].startswith(s3_bucket)
    back = read_manifest(f"{s3_bucket}/manifests/lgg.parquet")
    assert list(back["case_id"]) == list(result.manifest["case_id"])
    from raysegment.readers import read_scan

    assert read_scan(back["image_uris"].iloc[0][0]).array.shape == (3, 32, 32)


def test_empty_folder_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["ingest", "lgg", str(tmp_path), "--out", str(tmp_path / "m.parquet")])
    assert result.exit_code == 2
    assert "no lgg cases found" in result.output


def test_sample_archives_of_any_size_keep_unique_tcga_patient_ids():
    """Benchmark archives hold tens of thousands of patients; past 3,000 the ids go on in base 36 (A000...)."""
    from raysegment.ingest.lgg import PATIENT_DIR
    from raysegment.sample_data import _lgg_number

    numbers = [_lgg_number(p) for p in range(60_000)]
    assert numbers[0] == "7000" and numbers[2999] == "9999" and numbers[3000] == "A000"
    assert len(set(numbers)) == 60_000
    assert all(PATIENT_DIR.match(f"TCGA_CS_{n}_19950101") for n in numbers)


def test_names_off_the_usual_pattern_pair_by_number_and_the_later_duplicate_wins(tmp_path):
    """The column-wise pass takes files named exactly as the layout says; the rest take the long way.

    Both kinds pair by (folder, slice number): an upper-case ``_MASK.TIF``, a zero-padded number
    and two names of one slice (the later in the listing is kept, as a re-upload's would be).
    """
    from raysegment.ingest import IMPORTERS

    folder = tmp_path / "kaggle_3m" / "TCGA_CS_4941_19960909"
    folder.mkdir(parents=True)
    names = ["_1.tif", "_1_mask.tif", "_2.tif", "_2_MASK.TIF", "_03.tif", "_3_mask.tif", "_10.tif", "_10_mask.tif",
             "_01.tif", "_11.tif", "_12345678901234567890.tif"]
    for name in names:
        (folder / f"{folder.name}{name}").write_bytes(b"")
    (folder / "notes.txt").write_bytes(b"")
    found = IMPORTERS.get("lgg")(str(tmp_path / "kaggle_3m"))
    rows = {row["case_id"]: row for row in found.records()}
    assert sorted(rows) == [f"{folder.name}_{k}" for k in (1, 10, 2, 3)]
    assert rows[f"{folder.name}_1"]["image_uris"] == [str(folder / f"{folder.name}_1.tif")]  # listed after _01.tif
    assert rows[f"{folder.name}_2"]["mask_uri"] == str(folder / f"{folder.name}_2_MASK.TIF")
    assert rows[f"{folder.name}_3"]["image_uris"] == [str(folder / f"{folder.name}_03.tif")]
    assert {row["slice_index"] for row in rows.values()} == {0, 1, 2, 9}
    assert {row["patient_id"] for row in rows.values()} == {"TCGA_CS_4941"}
    assert found.problems == [f"{folder / folder.name}_12345678901234567890.tif: name does not follow {folder.name}_<k>[_mask].tif, left out",
                              f"{folder / folder.name}_11.tif: image without a mask, left out"]

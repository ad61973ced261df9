"""``raysegment.score``: masks of any format and place scored against references, checked with numpy by hand."""

from __future__ import annotations

import io

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from raysegment import storage
from raysegment.errors import ConfigError
from raysegment.infer.layout import case_key
from raysegment.score import CASE_COLUMNS, ERROR_COLUMNS, case_name, score

BRATS = {"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]}


def blob(shape, seed: int, labels=(1,)) -> np.ndarray:
    """A random label map with some structure: a few filled boxes of the given labels."""
    rng = np.random.default_rng(seed)
    out = np.zeros(shape, np.uint8)
    for _ in range(4):
        lo = [int(rng.integers(0, s - 2)) for s in shape]
        hi = [int(rng.integers(start + 1, size + 1)) for start, size in zip(lo, shape)]
        out[tuple(slice(a, b) for a, b in zip(lo, hi))] = rng.choice(labels)
    return out


def overlap(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Dice, IoU, precision and recall of two non-empty boolean masks, from the definitions."""
    tp, fp, fn = np.sum(pred & truth), np.sum(pred & ~truth), np.sum(~pred & truth)
    return {"dice": 2 * tp / (2 * tp + fp + fn), "iou": tp / (tp + fp + fn), "precision": tp / (tp + fp), "recall": tp / (tp + fn)}


def brute_hd95(pred: np.ndarray, truth: np.ndarray, spacing) -> float:
    """HD95 from all pairwise distances between surface voxels (a voxel with a face neighbour outside the mask)."""

    def surface_points(mask):
        padded = np.pad(mask, 1)
        inner = np.ones_like(mask)
        for axis in range(mask.ndim):
            for step in (-1, 1):
                inner &= np.roll(padded, step, axis=axis)[tuple(slice(1, -1) for _ in range(mask.ndim))]
        return np.argwhere(mask & ~inner) * np.asarray(spacing, float)

    a, b = surface_points(pred), surface_points(truth)
    distances = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    return max(np.percentile(distances.min(1), 95), np.percentile(distances.min(0), 95))


def write_tiff(path, array):
    tifffile.imwrite(path, array)


def write_png(path, array):
    Image.fromarray(array.astype(np.uint8)).save(path)


def write_nifti(path, array, spacing=(1.0, 1.0, 1.0)):
    nib.save(nib.Nifti1Image(array, np.diag([*spacing, 1.0])), str(path))


def row(result, case_id, cls="foreground"):
    rows = result.cases[(result.cases["case_id"] == case_id) & (result.cases["class"] == cls)]
    assert len(rows) == 1, result.cases
    return rows.iloc[0]


@pytest.mark.parametrize(
    "name, expected",
    [("case1.nii.gz", "case1"), ("case1_seg.nii.gz", "case1"), ("TCGA_11_mask.tif", "TCGA_11"), ("a_label.PNG", "a"),
     ("scan.tiff", "scan"), ("seg.dcm", "seg"), ("_mask.png", "_mask"), ("x_seg_mask.nii", "x_seg"), ("a.b.nii", "a.b")],
)
def test_case_name_drops_format_ending_and_one_role_suffix(name, expected):
    assert case_name(name) == expected


def test_tiff_folders_match_numpy_and_write_parquet(tmp_path):
    pred, truth, out = tmp_path / "pred", tmp_path / "truth", tmp_path / "out"
    pred.mkdir(), truth.mkdir()
    expected = {}
    for k in range(3):
        p, t = blob((32, 40), seed=k) * 255, blob((32, 40), seed=10 + k)  # LGG-style 0/255 against 0/1: nonzero is foreground
        p[:8, :8], t[:8, :8] = 255, 1  # never empty, so every ratio is defined
        write_tiff(pred / f"case{k}.tif", p)
        write_tiff(truth / f"case{k}_mask.tif", t)
        expected[f"case{k}"] = overlap(p != 0, t != 0)

    result = score(str(pred), str(truth), out=str(out))

    assert list(result.cases.columns) == CASE_COLUMNS and sorted(result.cases["case_id"]) == ["case0", "case1", "case2"]
    for case_id, metrics in expected.items():
        got = row(result, case_id)
        for name, value in metrics.items():
            assert got[name] == pytest.approx(value, abs=1e-12), (case_id, name)
        assert got["pred_uri"] == str(pred / f"{case_id}.tif") and got["truth_uri"] == str(truth / f"{case_id}_mask.tif")
    summary = result.summary.set_index("metric")
    dice = [m["dice"] for m in expected.values()]
    assert summary.loc["dice", "mean"] == pytest.approx(np.mean(dice))
    assert summary.loc["dice", "std"] == pytest.approx(np.std(dice, ddof=1))
    assert summary.loc["dice", "median"] == pytest.approx(np.median(dice))
    assert result.counts == {"matched": 3, "scored": 3, "failed": 0, "unmatched_pred": 0, "unmatched_truth": 0}
    assert result.exit_code == 0 and result.errors.empty
    written = pd.read_parquet(out / "case_metrics.parquet")
    pd.testing.assert_frame_equal(written, result.cases, check_dtype=False)
    assert pd.read_parquet(out / "summary.parquet")["mean"].tolist() == pytest.approx(result.summary["mean"].tolist(), nan_ok=True)
    assert list(pd.read_parquet(out / "errors.parquet").columns) == ERROR_COLUMNS


def test_png_folders_list_unmatched_on_both_sides(tmp_path):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir(), truth.mkdir()
    p, t = np.zeros((16, 16), np.uint8), np.zeros((16, 16), np.uint8)
    p[2:10, 2:10], t[4:12, 4:12] = 255, 1  # tp 36, fp 28, fn 28
    write_png(pred / "a_seg.png", p)
    write_png(truth / "a.png", t)
    write_png(pred / "only_pred.png", p)
    write_png(truth / "only_truth_label.png", t)
    (pred / "notes.txt").write_text("not a mask")

    result = score(str(pred), str(truth))

    assert row(result, "a")["dice"] == pytest.approx(72 / 128) and row(result, "a")["iou"] == pytest.approx(36 / 92)
    assert result.unmatched_pred == [str(pred / "only_pred.png")] and result.unmatched_truth == ["only_truth"]
    assert result.counts["matched"] == 1 and result.exit_code == 0


def test_nifti_hd95_is_in_mm_from_the_reference_spacing(tmp_path):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir(), truth.mkdir()
    spacing = (0.5, np.float32(0.8), 3.0)  # NIfTI stores float32 zooms
    # Two parallel plates two slices apart: every surface voxel is exactly 2 x 3 mm from the other plate.
    plate_p, plate_t = np.zeros((8, 8, 8), np.uint8), np.zeros((8, 8, 8), np.uint8)
    plate_p[2:6, 2:6, 2], plate_t[2:6, 2:6, 4] = 1, 1
    # Overlapping irregular shapes, against an independent brute-force HD95.
    shape_p, shape_t = blob((12, 10, 9), seed=1), blob((12, 10, 9), seed=2)
    for name, (p, t) in {"plates": (plate_p, plate_t), "shapes": (shape_p, shape_t)}.items():
        write_nifti(pred / f"{name}.nii.gz", p)  # the prediction's own header (1 mm) is not used
        write_nifti(truth / f"{name}_seg.nii.gz", t.astype(np.float32), spacing)

    result = score(str(pred), str(truth))

    plates = row(result, "plates")
    assert plates["hd95"] == pytest.approx(6.0) and plates["assd"] == pytest.approx(6.0) and plates["dice"] == 0.0
    assert plates["volume_true"] == pytest.approx(16 * 0.5 * float(np.float32(0.8)) * 3.0 / 1000)
    shapes = row(result, "shapes")
    assert shapes["hd95"] == pytest.approx(brute_hd95(shape_p != 0, shape_t != 0, spacing))
    assert shapes["hd95"] != pytest.approx(brute_hd95(shape_p != 0, shape_t != 0, (1, 1, 1)))
    assert shapes["dice"] == pytest.approx(overlap(shape_p != 0, shape_t != 0)["dice"])


def test_manifest_truth_matches_case_ids_and_infer_case_keys(tmp_path):
    masks, pred = tmp_path / "masks", tmp_path / "pred"
    masks.mkdir(), pred.mkdir()
    truth = {case: blob((20, 20), seed=k) for k, case in enumerate(["patient/01", "p02", "p03"])}
    for k, t in enumerate(truth.values()):
        t[:3, :3] = 1
        write_tiff(masks / f"t{k}.tif", t)
    manifest = pd.DataFrame({"case_id": [*truth, "unlabeled"], "mask_uri": [str(masks / f"t{k}.tif") for k in range(3)] + [None]})
    manifest.to_parquet(tmp_path / "manifest.parquet")
    predicted = {case: np.roll(t, 2, axis=0) for case, t in truth.items()}
    write_nifti(pred / f"{case_key('patient/01')}.nii.gz", predicted["patient/01"])  # what raysegment infer writes
    write_png(pred / "p02_mask.png", predicted["p02"])  # another tool, named by case id

    result = score(str(pred), str(tmp_path / "manifest.parquet"))

    assert sorted(result.cases["case_id"]) == ["p02", "patient/01"]
    for case in ("patient/01", "p02"):
        assert row(result, case)["dice"] == pytest.approx(overlap(predicted[case] != 0, truth[case] != 0)["dice"])
    assert result.unmatched_truth == ["p03"] and result.unmatched_pred == []
    # A manifest can name the predictions too: cases then match by case id on both sides.
    pd.DataFrame({"case_id": ["p02", "p03"], "mask_uri": [str(pred / "p02_mask.png"), None]}).to_parquet(tmp_path / "pred.parquet")
    by_manifest = score(str(tmp_path / "pred.parquet"), str(tmp_path / "manifest.parquet"))
    assert by_manifest.cases["dice"].tolist() == pytest.approx([row(result, "p02")["dice"]])


def test_labels_score_each_overlapping_region(tmp_path):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir(), truth.mkdir()
    p, t = blob((10, 12, 14), seed=3, labels=(1, 2, 4)), blob((10, 12, 14), seed=4, labels=(1, 2, 4))
    p[:2, :2, :2], t[:2, :2, :2] = 4, 4  # every region present on both sides
    write_nifti(pred / "brats.nii.gz", p)
    write_nifti(truth / "brats_seg.nii.gz", t.astype(np.float32))

    result = score(str(pred), str(truth), labels=BRATS)

    assert result.cases["class"].tolist() == ["WT", "TC", "ET"]
    for cls, values in BRATS.items():
        expected = overlap(np.isin(p, values), np.isin(t, values))
        for name in ("dice", "precision", "recall"):
            assert row(result, "brats", cls)[name] == pytest.approx(expected[name]), (cls, name)
    assert result.summary["class"].drop_duplicates().tolist() == ["WT", "TC", "ET"]


def test_bad_cases_become_error_rows_and_the_rest_is_scored(tmp_path):
    pred, truth, out = tmp_path / "pred", tmp_path / "truth", tmp_path / "out"
    pred.mkdir(), truth.mkdir()
    good = blob((16, 16), seed=5)
    good[0, 0] = 1
    write_tiff(pred / "good.tif", good), write_tiff(truth / "good.tif", good)
    write_tiff(pred / "small.tif", np.ones((8, 16), np.uint8)), write_tiff(truth / "small.tif", good)
    (pred / "broken.tif").write_bytes(b"not a tiff" * 20), write_tiff(truth / "broken.tif", good)
    write_tiff(pred / "twice.tif", good), write_png(pred / "twice_seg.png", good), write_tiff(truth / "twice.tif", good)

    result = score(str(pred), str(truth), out=str(out))

    assert result.cases["case_id"].tolist() == ["good"] and row(result, "good")["dice"] == 1.0
    errors = result.errors.set_index("case_id")["error"]
    assert sorted(errors.index) == ["broken", "small", "twice"]
    assert errors["small"].startswith(f"{pred / 'small.tif'}: ") and "(8, 16)" in errors["small"] and "(16, 16)" in errors["small"]
    assert errors["broken"].startswith(f"{pred / 'broken.tif'}: ") and "TIFF" in errors["broken"]
    assert str(pred / "twice_seg.png") in errors["twice"]
    assert all("\n" not in e for e in errors)
    assert result.exit_code == 3 and result.counts == {"matched": 4, "scored": 1, "failed": 3, "unmatched_pred": 0, "unmatched_truth": 0}
    assert sorted(pd.read_parquet(out / "errors.parquet")["case_id"]) == ["broken", "small", "twice"]


def test_all_cases_failing_still_writes_typed_empty_tables(tmp_path):
    pred, truth, out = tmp_path / "pred", tmp_path / "truth", tmp_path / "out"
    pred.mkdir(), truth.mkdir()
    (pred / "a.nii.gz").write_bytes(b"\x1f\x8b truncated"), write_png(truth / "a.png", np.ones((4, 4)))

    result = score(str(pred), str(truth), out=str(out))

    assert result.cases.empty and result.summary.empty and result.errors["case_id"].tolist() == ["a"] and result.exit_code == 3
    assert pd.read_parquet(out / "case_metrics.parquet").dtypes["dice"] == np.float64
    assert list(pd.read_parquet(out / "summary.parquet").columns)[:3] == ["class", "metric", "mean"]


def test_nothing_matching_and_bad_labels_are_one_line_config_errors(tmp_path):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir(), truth.mkdir()
    write_png(pred / "x.png", np.ones((4, 4))), write_png(truth / "y.png", np.ones((4, 4)))
    with pytest.raises(ConfigError, match="matches one of the 1 references"):
        score(str(pred), str(truth))
    with pytest.raises(ConfigError, match="no mask files"):
        score(str(tmp_path / "missing"), str(truth))
    with pytest.raises(ConfigError, match="labels"):
        score(str(pred), str(truth), labels={"WT": "all"})


def test_single_segment_dicom_seg_from_infer_is_scored(tmp_path):
    import pydicom

    from raysegment.readers import read_scan
    from raysegment.sample_data import make_sample_data
    from raysegment.writers import WRITERS, Reference

    make_sample_data(str(tmp_path / "lv"), "lv", patients=1, slices=1, size=32, test_patients=0)
    source = next(u for u in storage.list_files(str(tmp_path / "lv")) if u.endswith(".dcm"))
    dataset = pydicom.dcmread(source)
    dataset.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.77"  # a SEG needs one; the synthetic sample has none
    dataset.save_as(source)
    scan = read_scan(source)
    p, t = np.zeros((1, *scan.spatial_shape), np.uint8), np.zeros(scan.spatial_shape, np.uint8)
    p[0, 8:20, 10:16], t[10:22, 10:16] = 1, 1
    reference = Reference(case_id="lv1", affine=scan.affine, spacing=scan.spacing, metadata=scan.metadata, source_uris=[source], class_names=["lv"])
    (tmp_path / "pred").mkdir(), (tmp_path / "truth").mkdir()
    (tmp_path / "pred" / "lv1.dcm").write_bytes(WRITERS.get("dicom-seg")().encode(p, reference))
    write_png(tmp_path / "truth" / "lv1_mask.png", t)

    result = score(str(tmp_path / "pred"), str(tmp_path / "truth"))

    assert row(result, "lv1")["dice"] == pytest.approx(overlap(p[0] != 0, t != 0)["dice"])


@pytest.mark.s3
def test_s3_pred_truth_and_out(s3_bucket, tmp_path):
    p2d, t2d = blob((24, 24), seed=20), blob((24, 24), seed=21)
    p3d, t3d = blob((8, 9, 10), seed=22), blob((8, 9, 10), seed=23)
    for mask in (p2d, t2d, p3d, t3d):
        mask[:2, :2] = 1
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, p2d)
    storage.write_bytes(f"{s3_bucket}/pred/flat.tif", buffer.getvalue())
    buffer = io.BytesIO()
    Image.fromarray(t2d * 255).save(buffer, format="PNG")
    storage.write_bytes(f"{s3_bucket}/truth/flat_mask.png", buffer.getvalue())
    for side, array, spacing in (("pred", p3d, (1.0, 1.0, 1.0)), ("truth", t3d, (1.0, 2.0, 1.5))):
        write_nifti(tmp_path / f"{side}.nii.gz", array, spacing)
        storage.write_bytes(f"{s3_bucket}/{side}/vol.nii.gz", (tmp_path / f"{side}.nii.gz").read_bytes())
    storage.write_bytes(f"{s3_bucket}/truth/README.md", b"not a mask")

    result = score(f"{s3_bucket}/pred", f"{s3_bucket}/truth", out=f"{s3_bucket}/scores")

    assert row(result, "flat")["dice"] == pytest.approx(overlap(p2d != 0, t2d != 0)["dice"])
    assert row(result, "vol")["dice"] == pytest.approx(overlap(p3d != 0, t3d != 0)["dice"])
    assert row(result, "vol")["hd95"] == pytest.approx(brute_hd95(p3d != 0, t3d != 0, (1.0, 2.0, 1.5)))
    assert row(result, "vol")["truth_uri"] == f"{s3_bucket}/truth/vol.nii.gz"
    assert result.exit_code == 0 and result.unmatched_pred == result.unmatched_truth == []
    written = storage.read_table(f"{s3_bucket}/scores/case_metrics.parquet").to_pandas()
    assert sorted(written["case_id"]) == ["flat", "vol"] and written["dice"].tolist() == pytest.approx(result.cases["dice"].tolist())
    assert storage.read_table(f"{s3_bucket}/scores/summary.parquet").num_rows == len(result.summary)
    assert storage.read_table(f"{s3_bucket}/scores/errors.parquet").num_rows == 0

"""TIFF reader on files tifffile writes: gray, RGB (the LGG layout), page stacks, compression."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from raysegment.errors import ScanReadError
from raysegment.readers import read_scan


def test_lgg_style_rgb_slice(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "TCGA_CS_4941_19960909_11.tif", rgb)

    scan = read_scan(str(tmp_path / "TCGA_CS_4941_19960909_11.tif"))

    assert scan.array.shape == (3, 256, 256) and scan.array.dtype == np.uint8
    np.testing.assert_array_equal(scan.array, np.moveaxis(rgb, -1, 0))
    assert scan.channels == ("R", "G", "B")
    assert scan.spacing == (1.0, 1.0)
    np.testing.assert_array_equal(scan.affine, np.eye(4))
    assert scan.orientation == "RAS"


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
def test_gray_slice_keeps_dtype(tmp_path, dtype):
    gray = (np.arange(20 * 30).reshape(20, 30) % 250).astype(dtype)
    tifffile.imwrite(tmp_path / "g.tiff", gray)

    scan = read_scan(str(tmp_path / "g.tiff"))

    assert scan.array.shape == (1, 20, 30) and scan.array.dtype == dtype
    np.testing.assert_array_equal(scan.array[0], gray)
    assert scan.channels == ("gray",)


def test_page_stack_is_a_volume_with_pages_last(tmp_path):
    stack = np.random.default_rng(1).integers(0, 4000, (5, 16, 24)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")

    scan = read_scan(str(tmp_path / "stack.tif"))

    assert scan.array.shape == (1, 16, 24, 5)
    np.testing.assert_array_equal(scan.array[0], np.moveaxis(stack, 0, -1))
    assert scan.num_slices == 5 and scan.spacing == (1.0, 1.0, 1.0)


def test_rgb_page_stack_and_pages_appended_one_by_one(tmp_path):
    rgb_stack = np.random.default_rng(2).integers(0, 256, (3, 8, 9, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb_stack)
    for page in range(4):
        tifffile.imwrite(tmp_path / "appended.tif", np.full((6, 7), page, np.uint8), append=True)

    rgb = read_scan(str(tmp_path / "rgb.tif"))
    appended = read_scan(str(tmp_path / "appended.tif"))

    assert rgb.array.shape == (3, 8, 9, 3)
    np.testing.assert_array_equal(rgb.array, np.transpose(rgb_stack, (3, 1, 2, 0)))
    assert appended.array.shape == (1, 6, 7, 4)
    assert appended.array[0, 0, 0].tolist() == [0, 1, 2, 3]


def test_imagej_hyperstack_channels_and_slices(tmp_path):
    zcyx = np.random.default_rng(3).integers(0, 1000, (4, 2, 10, 12)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "hyper.tif", zcyx, imagej=True, metadata={"axes": "ZCYX"})

    scan = read_scan(str(tmp_path / "hyper.tif"))

    assert scan.array.shape == (2, 10, 12, 4)
    np.testing.assert_array_equal(scan.array, np.transpose(zcyx, (1, 2, 3, 0)))
    assert scan.channels == ("c0", "c1")


@pytest.mark.parametrize("compression", ["zlib", "lzw", "packbits", "zstd"])
def test_compressed_tiffs_decode_exactly(tmp_path, compression):
    rgb = np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "c.tif", rgb, compression=compression)

    scan = read_scan(str(tmp_path / "c.tif"))

    np.testing.assert_array_equal(scan.array, np.moveaxis(rgb, -1, 0))
    assert scan.metadata["compression"] != "none"


def test_truncated_tiff_raises(tmp_path):
    tifffile.imwrite(tmp_path / "full.tif", np.ones((128, 128), np.uint16))
    data = (tmp_path / "full.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])

    with pytest.raises(ScanReadError, match=r"cut\.tif: not a readable TIFF"):
        read_scan(str(tmp_path / "cut.tif"))

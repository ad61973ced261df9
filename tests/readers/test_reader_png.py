"""PNG reader on files Pillow (and a hand-rolled encoder, for 16-bit colour) writes."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from raysegment.errors import ScanReadError
from raysegment.readers import read_scan


def _png_by_hand(pixels: np.ndarray, color_type: int) -> bytes:
    """A minimal PNG (no filtering, big-endian samples) straight from the specification."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    height, width = pixels.shape[:2]
    bit_depth = pixels.dtype.itemsize * 8
    rows = pixels.astype(pixels.dtype.newbyteorder(">")).reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "mode, array, channels",
    [
        ("L", np.arange(12 * 10, dtype=np.uint8).reshape(12, 10), ("gray",)),
        ("I;16", (np.arange(12 * 10, dtype=np.uint16) * 500).reshape(12, 10), ("gray",)),
        ("RGB", np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8), ("R", "G", "B")),
        ("RGBA", np.random.default_rng(1).integers(0, 256, (12, 10, 4), dtype=np.uint8), ("R", "G", "B", "A")),
        ("LA", np.random.default_rng(2).integers(0, 256, (12, 10, 2), dtype=np.uint8), ("gray", "A")),
    ],
)
def test_pillow_modes_round_trip(tmp_path, mode, array, channels):
    image = Image.fromarray(array)
    assert image.mode == mode
    image.save(tmp_path / "x.png")

    scan = read_scan(str(tmp_path / "x.png"))

    expected = array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)
    assert scan.array.dtype == array.dtype
    np.testing.assert_array_equal(scan.array, expected)
    assert scan.channels == channels
    assert scan.spacing == (1.0, 1.0) and scan.orientation == "RAS"
    assert scan.metadata["bit_depth"] == array.dtype.itemsize * 8


def test_palette_png_keeps_indices(tmp_path):
    labels = np.array([[0, 1, 2], [4, 4, 0]], dtype=np.uint8)
    image = Image.fromarray(labels).convert("P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 0, 0, 0, 255] + [0] * 3 * 251)
    image.save(tmp_path / "p.png")

    scan = read_scan(str(tmp_path / "p.png"))

    np.testing.assert_array_equal(scan.array[0], labels)
    assert scan.channels == ("index",)


def test_one_bit_png_is_uint8(tmp_path):
    Image.fromarray(np.array([[True, False], [False, True]])).save(tmp_path / "b.png")

    scan = read_scan(str(tmp_path / "b.png"))

    assert scan.array.dtype == np.uint8
    assert scan.array[0].tolist() == [[1, 0], [0, 1]]


@pytest.mark.parametrize("samples, color_type", [(3, 2), (4, 6), (2, 4)])
def test_16_bit_colour_keeps_every_bit(tmp_path, samples, color_type):
    pixels = np.random.default_rng(3).integers(0, 65536, (5, 6, samples), dtype=np.uint16)
    (tmp_path / "deep.png").write_bytes(_png_by_hand(pixels, color_type))

    scan = read_scan(str(tmp_path / "deep.png"))

    assert scan.array.dtype == np.uint16
    np.testing.assert_array_equal(scan.array, np.moveaxis(pixels, -1, 0))


def test_hand_rolled_8_bit_png_matches_pillow(tmp_path):
    pixels = np.random.default_rng(4).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    (tmp_path / "hand.png").write_bytes(_png_by_hand(pixels, 2))

    np.testing.assert_array_equal(read_scan(str(tmp_path / "hand.png")).array, np.moveaxis(pixels, -1, 0))


@pytest.mark.parametrize("keep", [0.5, 0.98])
def test_truncated_png_raises(tmp_path, keep):
    noise = np.random.default_rng(5).integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: int(len(data) * keep)])

    with pytest.raises(ScanReadError, match=r"cut\.png: truncated PNG"):
        read_scan(str(tmp_path / "cut.png"))


def test_corrupt_png_data_raises(tmp_path):
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "ok.png")
    data = bytearray((tmp_path / "ok.png").read_bytes())
    start = data.index(b"IDAT") + 4
    data[start : start + 8] = b"\xff" * 8
    (tmp_path / "bad.png").write_bytes(bytes(data))

    with pytest.raises(ScanReadError, match=r"bad\.png: corrupt PNG"):
        read_scan(str(tmp_path / "bad.png"))

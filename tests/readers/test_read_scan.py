"""read_scan / format_of: picking the reader by ending and by content, and the one error type."""

from __future__ import annotations

import gzip
import subprocess
import sys
import textwrap

import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image

from raysegment.errors import ScanReadError
from raysegment.readers import READERS, format_of, read_scan


@pytest.fixture
def samples(tmp_path, make_dicom):
    """One small file per format, each written under a name with no file ending."""
    pixels = np.arange(20, dtype=np.uint8).reshape(4, 5)
    files = {}
    tifffile.imwrite(tmp_path / "t.tif", pixels)
    Image.fromarray(pixels).save(tmp_path / "p.png")
    nib.save(nib.Nifti1Image(pixels[..., None], np.eye(4)), tmp_path / "n.nii")
    (tmp_path / "d.dcm").write_bytes(make_dicom(pixels.astype(np.int16)))
    for name, ending in (("tiff", "t.tif"), ("png", "p.png"), ("nifti", "n.nii"), ("dicom", "d.dcm")):
        files[name] = tmp_path / ending
    (tmp_path / "nifti_gz").write_bytes(gzip.compress((tmp_path / "n.nii").read_bytes()))
    return pixels, files


def test_registry_lists_the_four_formats():
    assert READERS.names() == ["dicom", "nifti", "png", "tiff"]
    for name in READERS:
        reader = READERS.get(name)
        assert reader.name == name and reader.suffixes and all(s == s.lower() for s in reader.suffixes)


@pytest.mark.parametrize(
    "name, expected",
    [("a.tif", "tiff"), ("A.TIFF", "tiff"), ("b.nii", "nifti"), ("b.nii.gz", "nifti"),
     ("c.dcm", "dicom"), ("c.DICOM", "dicom"), ("d.png", "png")],
)
def test_format_by_ending_does_not_open_the_file(tmp_path, name, expected):
    assert format_of(str(tmp_path / name)) == expected  # the file does not even exist


def test_format_by_content_when_the_ending_says_nothing(tmp_path, samples):
    pixels, files = samples
    for name, path in files.items():
        for bare in (tmp_path / f"bare_{name}", tmp_path / f"1.2.840.113619.{name}.7"):
            bare.write_bytes(path.read_bytes())
            assert format_of(str(bare)) == name
            scan = read_scan(str(bare))
            assert scan.array.reshape(-1).tolist() == pixels.reshape(-1).tolist()
    assert format_of(str(tmp_path / "nifti_gz")) == "nifti"
    np.testing.assert_array_equal(read_scan(str(tmp_path / "nifti_gz")).array[0, ..., 0], pixels)


def test_dicom_with_a_tiff_header_in_its_preamble_is_dicom(tmp_path, make_dicom):
    data = make_dicom(np.ones((3, 3), np.int16))
    (tmp_path / "dual").write_bytes(b"II*\x00" + data[4:])

    assert format_of(str(tmp_path / "dual")) == "dicom"
    assert read_scan(str(tmp_path / "dual")).metadata["format"] == "dicom"


def test_a_folder_is_a_dicom_series(tmp_path, make_series):
    series = make_series(str(tmp_path / "series"), slices=2)
    assert format_of(series.folder) == "dicom"


def test_explicit_format_overrides_the_ending(tmp_path, samples):
    _, files = samples
    odd = tmp_path / "scan.dat"
    odd.write_bytes(files["png"].read_bytes())

    assert read_scan(str(odd), format="png").metadata["format"] == "png"
    with pytest.raises(ScanReadError, match="unknown format 'jpeg'; valid: dicom, nifti, png, tiff"):
        read_scan(str(odd), format="jpeg")


def test_file_uri_and_relative_paths_become_absolute_sources(tmp_path, samples, monkeypatch):
    _, files = samples
    monkeypatch.chdir(tmp_path)
    assert read_scan(f"file://{files['tiff']}").source == str(files["tiff"])
    assert read_scan("t.tif").source == str(files["tiff"])


@pytest.mark.parametrize("name", ["garbage.nii.gz", "garbage.nii", "garbage.tif", "garbage.dcm", "garbage.png", "garbage"])
def test_garbage_bytes_raise_scan_read_error_naming_the_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())

    with pytest.raises(ScanReadError) as info:
        read_scan(str(path))
    assert info.value.uri == str(path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["empty.nii.gz", "empty.dcm", "empty.png", "empty.tif", "empty"])
def test_empty_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"")

    with pytest.raises(ScanReadError, match=f"{name}: empty file"):
        read_scan(str(tmp_path / name))


@pytest.mark.parametrize("name", ["missing.nii.gz", "missing.dcm", "missing"])
def test_missing_file(tmp_path, name):
    with pytest.raises(ScanReadError, match=f"{name}: no such file"):
        read_scan(str(tmp_path / name))


def test_unsupported_ending_and_content(tmp_path):
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 200)

    expected = r"photo\.jpg: unsupported file ending '\.jpg', and the content is not dicom, nifti, png, tiff"
    with pytest.raises(ScanReadError, match=expected):
        read_scan(str(tmp_path / "photo.jpg"))


def test_unsupported_uri_scheme():
    with pytest.raises(ScanReadError, match="http://example.org/a.nii: unsupported URI scheme"):
        read_scan("http://example.org/a.nii")


def test_format_libraries_load_only_when_a_file_is_read_and_a_new_format_is_one_module(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(6, dtype=np.int16).reshape(2, 3))
    script = textwrap.dedent(
        f"""
        import sys, io
        import numpy as np
        import raysegment.readers as readers
        heavy = [m for m in ("tifffile", "nibabel", "pydicom", "PIL") if m in sys.modules]
        assert not heavy, heavy

        from raysegment.readers import READERS, Reader
        from raysegment.scan import Scan, affine_2d

        @READERS.register("npy")
        class NpyReader(Reader):
            name = "npy"
            suffixes = (".npy",)

            @staticmethod
            def sniff(head):
                return head.startswith(b"\\x93NUMPY")

            def decode(self, data, uri):
                array = np.load(io.BytesIO(data))
                return Scan(array[None], ("gray",), (1.0, 1.0), affine_2d(), source=uri)

        scan = readers.read_scan({str(tmp_path / "x.npy")!r})
        assert scan.array.shape == (1, 2, 3), scan.array.shape
        assert readers.format_of({str(tmp_path / "x.npy")!r}) == "npy"
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"

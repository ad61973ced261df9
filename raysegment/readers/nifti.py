"""NIfTI-1 and NIfTI-2 volumes, ``.nii`` and ``.nii.gz`` (nibabel).

A 3D image is ``(1, i, j, k)``; a 4D image puts its 4th axis first as channels (``(t, i, j, k)``).
The affine is nibabel's ``img.affine`` unchanged (sform if set, else qform). The metadata keeps what
a writer needs to reproduce the header geometry, and nothing that could identify a subject
(``descrip``, ``db_name`` and ``aux_file`` are free text and stay out).

The whole file is decompressed and its length checked against the header before any voxel is
used: nibabel reads lazily, so a truncated ``.nii.gz`` would otherwise fail much later, or not at all.
"""

from __future__ import annotations

import gzip
import zlib

import numpy as np

from raysegment.errors import ScanReadError
from raysegment.readers.base import READERS, Reader, library_errors, native
from raysegment.scan import Scan

_GZIP_MAGIC = b"\x1f\x8b"
_HEADER_SIZES = {348: 1, 540: 2}  # sizeof_hdr -> NIfTI version


def _version(header: bytes) -> int | None:
    """The NIfTI version announced by the first bytes of an uncompressed header, or None."""
    if len(header) < 8:
        return None
    for order in ("little", "big"):
        version = _HEADER_SIZES.get(int.from_bytes(header[:4], order))
        if version == 1 and header[344:347] == b"n+1":
            return 1
        if version == 2 and header[4:7] == b"n+2":
            return 2
    return None


@READERS.register("nifti")
class NiftiReader(Reader):
    name = "nifti"
    suffixes = (".nii", ".nii.gz")

    @staticmethod
    def sniff(head: bytes) -> bool:
        if head.startswith(_GZIP_MAGIC):
            try:  # the head is a prefix of the stream: decompress as much of it as there is
                head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 1024)
            except zlib.error:
                return False
        return _version(head) is not None

    def decode(self, data: bytes, uri: str) -> Scan:
        import nibabel as nib

        # storage.read_bytes already inflates names ending in .gz (pyarrow detects the
        # compression from the name); a gzip stream under another name is inflated here.
        if data.startswith(_GZIP_MAGIC):
            with library_errors(uri, "truncated or corrupt gzip stream"):
                data = gzip.decompress(data)
        version = _version(data)
        if version is None:
            raise ScanReadError(uri, "not a single-file NIfTI-1/NIfTI-2 image (bad sizeof_hdr or magic)")
        image_type = nib.Nifti1Image if version == 1 else nib.Nifti2Image
        with library_errors(uri, f"invalid NIfTI-{version} header"):
            image = image_type.from_bytes(data)
            header = image.header
            shape = header.get_data_shape()
            expected = image.dataobj.offset + int(np.prod(shape, dtype=np.int64)) * header.get_data_dtype().itemsize
        if len(data) < expected:
            raise ScanReadError(uri, f"truncated NIfTI: {len(data)} bytes, the header needs {expected}")
        with library_errors(uri, "unreadable NIfTI voxel data"):
            voxels = native(np.asarray(image.dataobj))
        array, channels = _channels_first(voxels, header, uri)
        return Scan(
            array=array,
            channels=channels,
            spacing=tuple(float(z) for z in header.get_zooms()[: array.ndim - 1]),
            affine=image.affine,
            source=uri,
            metadata=_geometry_metadata(header, version, image.dataobj),
        )


def _channels_first(voxels: np.ndarray, header, uri: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """``(C, *spatial)`` and channel names from nibabel's ``(i, j[, k[, t[, 1, c]]])`` array.

    Shape:
        2D/3D ``(i, j[, k])`` -> ``(1, i, j[, k])``; 4D ``(i, j, k, t)`` -> ``(t, i, j, k)``;
        5D ``(i, j, k, 1, c)`` (NIfTI vectors) -> ``(c, i, j, k)``; RGB(A) datatypes -> 3 or 4 channels.
    """
    if voxels.dtype.names:  # NIFTI_TYPE_RGB24 / RGBA32 come back as a structured array
        if voxels.ndim > 3:
            raise ScanReadError(uri, f"RGB NIfTI with shape {voxels.shape} is not supported")
        return np.stack([voxels[n] for n in voxels.dtype.names]), tuple(n.upper() for n in voxels.dtype.names)
    if voxels.ndim in (2, 3):
        return voxels[None], ("gray",)
    if voxels.ndim == 5 and voxels.shape[3] == 1:
        voxels, prefix = voxels[:, :, :, 0, :], "c"
    elif voxels.ndim == 4:
        prefix = "t"
    else:
        raise ScanReadError(uri, f"NIfTI with shape {voxels.shape} is not supported (2 or 3 spatial axes, then channels)")
    count = voxels.shape[-1]
    # intent_name (16 bytes) may list the channels, e.g. "flair,t1,t1ce,t2".
    named = [n.strip() for n in header.get_intent()[2].split(",") if n.strip()]
    names = tuple(named) if len(named) == count else tuple(f"{prefix}{i}" for i in range(count))
    return np.ascontiguousarray(np.moveaxis(voxels, -1, 0)), names


def _geometry_metadata(header, version: int, proxy) -> dict:
    """What a writer needs to reproduce the header's geometry and storage; no free-text fields.

    ``proxy`` is the image's ArrayProxy: nibabel moves ``scl_slope``/``scl_inter`` there on load.
    """
    xyz_units, t_units = header.get_xyzt_units()
    metadata = {
        "format": "nifti",
        "nifti_version": version,
        # Both matrices, even when their code is 0 (unused): with the codes they rebuild the header.
        "qform_code": int(header["qform_code"]),
        "sform_code": int(header["sform_code"]),
        "qform": np.asarray(header.get_qform(), dtype=float).tolist(),
        "sform": np.asarray(header.get_sform(), dtype=float).tolist(),
        "xyz_units": xyz_units,
        "t_units": t_units,
        "zooms": [float(z) for z in header.get_zooms()],
        "dtype_on_disk": str(header.get_data_dtype()),
    }
    if (proxy.slope, proxy.inter) != (1.0, 0.0):
        metadata["scl_slope"], metadata["scl_inter"] = float(proxy.slope), float(proxy.inter)
    return metadata

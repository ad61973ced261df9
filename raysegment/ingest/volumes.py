"""Cases described by a file (``dataset.json``, a case table) -> manifest rows, checked by their headers.

The importers for datasets that describe themselves (``msd``, ``nnunet``, ``table``) only say which
files make a case; this module checks each case before it becomes a row. NIfTI files are checked by
their header alone (shape, channels, affine; a few hundred bytes, even on S3), other formats are read
whole because they have no cheap header. A case whose image files, or image and label, disagree in
shape or affine is reported and left out; a channel count other than the description's is an error,
since then the description is wrong for the whole dataset, not one case.
"""

from __future__ import annotations

import io
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from raysegment import storage
from raysegment.errors import RaySegmentError, ScanReadError
from raysegment.ingest.base import DatasetError, Discovery

NIFTI = re.compile(r"\.nii(\.gz)?$", re.IGNORECASE)
#: Largest NIfTI header (NIfTI-2); NIfTI-1 needs 348.
_HEADER_BYTES = 540
#: Millimetres two affines may differ by and still be the same grid (float32 headers round).
AFFINE_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Geometry:
    """What a file's header says: spatial shape, channels (a 4th axis), voxel-to-RAS affine."""

    shape: tuple[int, ...]
    channels: int
    affine: np.ndarray


@dataclass
class Case:
    """One case as a dataset's description names it; ``mask_uri`` None for unlabeled cases."""

    case_id: str
    image_uris: list[str]
    mask_uri: str | None = None
    patient_id: str | None = None


def stem(uri: str) -> str:
    """A file's name without its ending (``.nii.gz`` counts as one)."""
    name = storage.basename(uri)
    return NIFTI.sub("", name) if NIFTI.search(name) else name.rsplit(".", 1)[0] if "." in name else name


def read_json(uri: str) -> dict:
    """A dataset description; missing or invalid JSON is one :class:`DatasetError` line naming it."""
    try:
        return json.loads(storage.read_bytes(uri))
    except storage.MissingObjectError as exc:
        raise DatasetError(f"{uri}: missing (the dataset folder must hold it)") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{uri}: not valid JSON ({exc})") from exc


def read_geometry(uri: str) -> Geometry:
    """The geometry of an image or label file, from the header alone for NIfTI.

    Raises:
        ScanReadError: missing, unreadable or not a NIfTI header.
    """
    if not NIFTI.search(uri):
        from raysegment.readers import read_scan

        scan = read_scan(uri)  # TIFF, PNG, DICOM: no header worth parsing apart from the pixels
        return Geometry(tuple(scan.spatial_shape), scan.array.shape[0], np.asarray(scan.affine, float))
    import nibabel as nib
    from nibabel.spatialimages import HeaderDataError

    fs, path = storage.filesystem(uri)
    try:
        with fs.open_input_stream(path) as stream:  # compression detected from ".gz": the first bytes inflated
            head = stream.read(_HEADER_BYTES)
    except (OSError, ValueError) as exc:
        missing = isinstance(exc, FileNotFoundError) or "does not exist" in str(exc)  # S3 says it in words
        raise ScanReadError(uri, "no such file or object" if missing else f"unreadable ({exc})") from exc
    for header_type, size in ((nib.Nifti1Header, 348), (nib.Nifti2Header, 540)):
        try:  # exactly the header's bytes: nibabel then does not look for extensions we did not read
            header = header_type.from_fileobj(io.BytesIO(head[:size]), check=True)
        except (HeaderDataError, ValueError, EOFError):
            continue
        shape = tuple(int(n) for n in header.get_data_shape())
        if len(shape) not in (2, 3, 4):
            raise ScanReadError(uri, f"NIfTI of shape {shape}; expected 2 or 3 spatial axes and an optional channel axis")
        return Geometry(shape[:3], shape[3] if len(shape) == 4 else 1, np.asarray(header.get_best_affine(), float))
    raise ScanReadError(uri, "not a NIfTI-1/NIfTI-2 header")


def _mismatch(case: Case, images: list[Geometry], mask: Geometry | None) -> str | None:
    """Why a case's files do not lie on one grid, or None."""
    first = images[0]
    others = [(uri, g) for uri, g in zip(case.image_uris[1:], images[1:])]
    if mask is not None:
        others.append((case.mask_uri, mask))
    for uri, g in others:
        if g.shape != first.shape:
            return f"{uri}: shape {g.shape} differs from {storage.basename(case.image_uris[0])} {first.shape}"
        difference = float(np.abs(g.affine - first.affine).max())
        if difference > AFFINE_TOLERANCE:
            return f"{uri}: affine differs from {storage.basename(case.image_uris[0])}'s by up to {difference:.3g} mm"
    return None


def add_cases(found: Discovery, cases: list[Case], dataset: str, channels: list[str] | None, source: str, threads: int = 16) -> None:
    """Check ``cases`` by their headers and append a manifest row, or a problem, to ``found``.

    Args:
        found: the importer's discovery, extended in place.
        cases: the cases the description names.
        dataset: the importer's name (the manifest's ``dataset`` column).
        channels: the channel names the description gives, in order; None names them ``image``
            (one channel) or ``image_0``, ``image_1``, ... after the first case's count.
        source: the description, named in errors.
    Raises:
        DatasetError: an image holds another number of channels than the description names.
    """
    from raysegment.readers import format_of

    uris = sorted({u for c in cases for u in [*c.image_uris, c.mask_uri] if u is not None})

    def geometry(uri: str) -> Geometry | str:
        try:
            return read_geometry(uri)
        except RaySegmentError as exc:
            return str(exc)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        geometries = dict(zip(uris, pool.map(geometry, uris)))
    taken: set[str] = set()
    for case in cases:
        if case.case_id in taken:  # e.g. the same name in imagesTr/ and imagesTs/
            found.problems.append(f"{case.image_uris[0]}: case id {case.case_id!r} is taken by another case, left out")
            continue
        taken.add(case.case_id)
        read = [geometries[u] for u in case.image_uris] + ([geometries[case.mask_uri]] if case.mask_uri else [])
        failed = next((g for g in read if isinstance(g, str)), None)
        if failed is not None:
            found.problems.append(f"{failed} (case {case.case_id} left out)")
            continue
        images, mask = read[: len(case.image_uris)], (read[-1] if case.mask_uri else None)
        count = sum(g.channels for g in images)
        if channels is None:
            channels, source = (["image"] if count == 1 else [f"image_{i}" for i in range(count)]), f"case {case.case_id} of {source}"
        if count != len(channels):
            raise DatasetError(f"{case.image_uris[0]}: {count} channels, but {source} has {len(channels)} ({', '.join(channels)})")
        problem = _mismatch(case, images, mask)
        if problem:
            found.problems.append(f"{problem}, case {case.case_id} left out")
            continue
        shape = images[0].shape
        found.rows.append(
            {
                "case_id": case.case_id,
                "patient_id": case.patient_id or case.case_id,
                "dataset": dataset,
                "level": "volume" if len(shape) == 3 else "slice",
                "image_uris": list(case.image_uris),
                "channels": list(channels),
                "mask_uri": case.mask_uri,
                "num_slices": shape[-1] if len(shape) == 3 else None,
                "volume_id": case.case_id if len(shape) == 3 else None,
                "format": format_of(case.image_uris[0]),
            }
        )

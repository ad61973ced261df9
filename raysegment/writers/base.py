"""The writer contract and what every writer gets to know about the input scan."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from raysegment.errors import ConfigError
from raysegment.registry import Registry

# Input format -> the mask format ``--format auto`` writes. DICOM input gets NIfTI (full geometry,
# readable everywhere); DICOM SEG is chosen explicitly with ``--format dicom-seg``.
_AUTO = {"nifti": "nifti", "tiff": "tiff", "png": "png", "dicom": "nifti"}


@dataclass
class Reference:
    """What a writer may copy from the input: geometry and technical header fields, never identity.

    Attributes:
        case_id: pseudonymous case id; the only subject identifier an output carries.
        affine: 4x4 voxel -> RAS+ mm transform of the mask grid (the input's).
        spacing: voxel size per spatial axis, mm.
        metadata: the input Scan's non-identifying metadata (NIfTI qform/sform codes, ...).
        source_uris: the input files (DICOM SEG references the source instances).
        class_names: one name per mask channel.
    """

    case_id: str
    affine: np.ndarray
    spacing: tuple[float, ...]
    metadata: dict[str, Any] = field(default_factory=dict)
    source_uris: list[str] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)


class Writer(abc.ABC):
    """One output format.

    Attributes:
        name: format name (``--format`` value), also the registry key.
        suffix: file ending of what :meth:`encode` returns.
        holds_floats: whether the format can store a float probability map.
        takes_label_map: whether the format stores a label map (DICOM SEG holds one segment per class).
    """

    name: ClassVar[str]
    suffix: ClassVar[str]
    holds_floats: ClassVar[bool] = True
    takes_label_map: ClassVar[bool] = True

    def encode_label_map(self, labels: np.ndarray, reference: Reference) -> bytes:
        """The file content for one label map in the source's own values.

        Shape:
            ``labels`` is ``(*spatial)`` uint8 or uint16 on the input's voxel grid
            (:func:`raysegment.preprocess.label_image`).
        """
        raise NotImplementedError(f"{self.name} masks hold one segment per class; they are written one-hot")

    @abc.abstractmethod
    def encode(self, array: np.ndarray, reference: Reference) -> bytes:
        """The file content for ``array``.

        Shape:
            ``array`` is ``(K, *spatial)`` on the input's voxel grid: uint8 0/1 for a mask,
            float32 in [0, 1] for a probability map.
        """


WRITERS: Registry[type[Writer]] = Registry("mask writer")


def output_format(requested: str, input_format: str) -> str:
    """The writer name for a case: ``requested`` unless it is ``auto``, then the input's format."""
    if requested != "auto":
        return requested
    try:
        return _AUTO[input_format]
    except KeyError:
        raise ConfigError(f"no default mask format for {input_format!r} input; pass --format") from None


def pack_labels(mask: np.ndarray) -> np.ndarray:
    """A ``(K, *spatial)`` 0/1 mask as one integer label image for formats with one channel.

    One class is stored as 0/255 (as the LGG masks are); several, possibly overlapping, classes
    as bit fields: bit ``k`` set where class ``k`` is present.
    """
    if mask.shape[0] == 1:
        return (mask[0] > 0).astype(np.uint8) * np.uint8(255)
    if mask.shape[0] > 16:
        raise ConfigError(f"{mask.shape[0]} classes do not fit a 16-bit label image; use --format nifti")
    dtype = np.uint8 if mask.shape[0] <= 8 else np.uint16
    weights = (1 << np.arange(mask.shape[0])).astype(dtype)
    return np.tensordot(weights, (mask > 0).astype(dtype), axes=1).astype(dtype)

"""Config-driven preprocessing shared by training, evaluation and bulk inference.

A :class:`PreprocessConfig` is saved inside every checkpoint, so inference prepares a scan exactly
as training did. It names:

* ``channels``: which channels to feed, by name and in order (``["flair", "t1ce"]``), or all;
* ``labels``: region name -> raw label values (or ``"nonzero"``); BraTS uses overlapping regions
  ``{"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]}``, so masks are multi-label ``(K, H, W)``;
* ``label_mode``: ``regions`` (one sigmoid per label; they may overlap) or ``exclusive`` (each
  voxel is background or one class: a softmax over background and the labels, as hippocampus
  anterior/posterior or cardiac LV/myocardium/RV). ``auto`` picks ``exclusive`` for two or more
  labels whose values do not overlap, ``regions`` otherwise;
* ``steps``: a pipeline of registered transforms (``TRANSFORMS``), each ``{"name": ..., **params}``.
  An intensity step may say ``scope: volume``: its statistics then come from the whole patient
  volume (a NIfTI volume, or every slice of a slice dataset's patient), as Buda et al. and nnU-Net
  normalise MRI, rather than from each slice, whose statistics swing with how much brain and
  tumour it shows. Volume steps come first; :func:`normalise_slices` runs them;
* ``orientation``: optional axis codes (``"RAS"``) volumes are reoriented to before slicing;
* ``slice_selection``: which slices of a volume to use for training;
* ``dims``: 2 cuts volumes into slices for 2D models; 3 keeps each volume whole for 3D models,
  which see it at one voxel ``spacing`` (resampled, as nnU-Net does, so a voxel means the same
  distance in every scan) and train on / predict with windows of ``patch_size`` voxels. A 3D
  config's steps are intensity steps over the whole volume; the resampling is its geometry.

Geometric steps record what they did (a JSON-able list) so :func:`invert_geometry` can put a
predicted mask back at the original size, and :func:`restore_orientation` back in the original
voxel order, which is what lets inference write a mask that overlays the input exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from raysegment.errors import ScanReadError
from raysegment.registry import Registry
from raysegment.scan import Scan

LabelRule = Union[list[int], Literal["nonzero"]]


class PreprocessConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channels: list[str] | None = None
    labels: dict[str, LabelRule] = Field(default_factory=lambda: {"foreground": "nonzero"})
    steps: list[dict[str, Any]] = Field(default_factory=lambda: [{"name": "scale"}, {"name": "resize", "size": 128}])
    label_mode: Literal["auto", "regions", "exclusive"] = "auto"
    orientation: str | None = None
    slice_selection: Literal["all", "foreground", "middle", "balanced"] = "all"
    dims: Literal[2, 3] = 2
    spacing: list[float] | None = Field(None, description="3D: voxel spacing (mm) volumes are resampled to, in the "
                                        "axis order after `orientation`; null keeps each scan's own")
    patch_size: list[int] | None = Field(None, description="3D: the training patch and sliding window, voxels per axis")

    @field_validator("label_mode")
    @classmethod
    def _exclusive_needs_disjoint_labels(cls, mode: str, info) -> str:
        labels = info.data.get("labels") or {}
        if mode == "exclusive" and not _disjoint(labels):
            raise ValueError(f"label_mode 'exclusive' needs labels whose values do not overlap, got {labels}")
        return mode

    @property
    def exclusive(self) -> bool:
        """Whether each voxel is one class at most (softmax) rather than in any set of regions (sigmoids)."""
        if self.label_mode == "auto":
            return len(self.labels) > 1 and _disjoint(self.labels)
        return self.label_mode == "exclusive"

    @property
    def out_channels(self) -> int:
        """Model outputs: one per label, and one for background when the classes are exclusive."""
        return self.num_classes + 1 if self.exclusive else self.num_classes

    def for_outputs(self, out_channels: int) -> PreprocessConfig:
        """This config with ``label_mode`` settled by a model's output count (checkpoints saved before it existed)."""
        if self.label_mode != "auto":
            return self
        return self.model_copy(update={"label_mode": "exclusive" if self.exclusive and out_channels == self.num_classes + 1 else "regions"})

    @field_validator("steps")
    @classmethod
    def _known_steps(cls, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        slice_seen = False
        for step in steps:
            if "name" not in step:
                raise ValueError(f"preprocessing step without a name: {step}")
            TRANSFORMS.get(step["name"])  # KeyError lists the valid names
            scope = step.get("scope", "slice")
            if scope not in ("slice", "volume"):
                raise ValueError(f"step {step['name']!r}: scope must be 'slice' or 'volume', not {scope!r}")
            if scope == "volume" and step["name"] not in VOLUME_STEPS:
                raise ValueError(f"step {step['name']!r} cannot take scope 'volume' (only {sorted(VOLUME_STEPS)} can)")
            if scope == "volume" and slice_seen:
                raise ValueError(f"step {step['name']!r}: volume-scope steps must come before the per-slice ones")
            slice_seen = slice_seen or scope == "slice"
        return steps

    @model_validator(mode="after")
    def _three_d_settings(self) -> PreprocessConfig:
        if self.dims == 2:
            if self.spacing is not None or self.patch_size is not None:
                raise ValueError("spacing and patch_size are settings of 3D models (dims: 3)")
            return self
        for name, values in (("spacing", self.spacing), ("patch_size", self.patch_size)):
            if values is not None and (len(values) != 3 or min(values) <= 0):
                raise ValueError(f"{name} must be three positive numbers (one per axis), got {values}")
        geometric = [s["name"] for s in self.steps if s["name"] not in VOLUME_STEPS]
        if geometric:
            raise ValueError(f"3D models see whole volumes: steps {geometric} cut or resize slices (keep intensity steps: {sorted(VOLUME_STEPS)})")
        return self

    @property
    def volume_steps(self) -> list[dict[str, Any]]:
        """The leading steps whose statistics come from the whole volume."""
        return [s for s in self.steps if s.get("scope") == "volume"]

    @property
    def slice_steps(self) -> list[dict[str, Any]]:
        if self.dims == 3:
            return []  # every step of a 3D config sees the whole volume
        return [s for s in self.steps if s.get("scope", "slice") == "slice"]

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def class_names(self) -> list[str]:
        return list(self.labels)


def _disjoint(labels: dict[str, LabelRule]) -> bool:
    rules = list(labels.values())
    if any(rule == "nonzero" for rule in rules):
        return False
    values = [v for rule in rules for v in rule]
    return len(values) == len(set(values))


Transform = Callable[..., tuple[np.ndarray, "np.ndarray | None"]]
TRANSFORMS: Registry[Transform] = Registry("preprocessing step")
#: Intensity steps that work on ``(C, *spatial)`` of any rank, so they can see a whole volume.
VOLUME_STEPS = {"scale", "percentile_clip", "zscore"}


def _spatial_axes(image: np.ndarray) -> tuple[int, ...]:
    return tuple(range(1, image.ndim))


def _size(size: int | list[int] | tuple[int, int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[1]))


def _interpolate(array: np.ndarray, shape: tuple[int, int], mode: str) -> np.ndarray:
    """Resize ``(C, H, W)`` to ``shape`` with torch (bilinear for intensities, nearest for labels)."""
    import torch
    import torch.nn.functional as F

    if tuple(array.shape[-2:]) == tuple(shape):
        return array
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]
    if mode == "nearest":
        out = F.interpolate(tensor, size=shape, mode="nearest-exact")
    else:
        out = F.interpolate(tensor, size=shape, mode="bilinear", align_corners=False, antialias=True)
    return out[0].numpy()


@TRANSFORMS.register("resize")
def resize(image, mask, record, size=128):
    """Resize to ``size`` (int or (H, W)); masks nearest-neighbour."""
    shape = _size(size)
    record.append({"op": "resize", "from": list(image.shape[-2:]), "to": list(shape)})
    return _interpolate(image, shape, "linear"), None if mask is None else _interpolate(mask, shape, "nearest")


@TRANSFORMS.register("center_crop")
def center_crop(image, mask, record, size=128):
    """Crop (or zero-pad, where the image is smaller) the centre ``size`` region."""
    h, w = image.shape[-2:]
    th, tw = _size(size)
    top, left = (h - th) // 2, (w - tw) // 2
    record.append({"op": "crop", "from": [h, w], "top": top, "left": left, "to": [th, tw]})
    return _crop(image, top, left, th, tw), None if mask is None else _crop(mask, top, left, th, tw)


def _crop(array: np.ndarray, top: int, left: int, th: int, tw: int) -> np.ndarray:
    """Window ``[top:top+th, left:left+tw]`` of ``array``; parts outside the array are zero."""
    h, w = array.shape[-2:]
    out = np.zeros(array.shape[:-2] + (th, tw), dtype=array.dtype)
    sy, sx = max(top, 0), max(left, 0)
    ey, ex = min(top + th, h), min(left + tw, w)
    if ey > sy and ex > sx:
        out[..., sy - top : ey - top, sx - left : ex - left] = array[..., sy:ey, sx:ex]
    return out


@TRANSFORMS.register("scale")
def scale(image, mask, record, mode="minmax"):
    """Per-channel intensities to [0, 1]: ``minmax`` of the image, or ``dtype`` (divide by 255/65535)."""
    image = image.astype(np.float32)
    if mode == "dtype":
        return image / 255.0 if image.max() <= 255 else image / 65535.0, mask
    low = image.min(axis=_spatial_axes(image), keepdims=True)
    high = image.max(axis=_spatial_axes(image), keepdims=True)
    return (image - low) / np.maximum(high - low, 1e-8), mask


@TRANSFORMS.register("percentile_clip")
def percentile_clip(image, mask, record, low=0.5, high=99.5, rescale=True):
    """Clip each channel to its ``[low, high]`` percentiles (e.g. 5-95), then optionally to [0, 1]."""
    image = image.astype(np.float32)
    lo = np.percentile(image, low, axis=_spatial_axes(image), keepdims=True)
    hi = np.percentile(image, high, axis=_spatial_axes(image), keepdims=True)
    image = np.clip(image, lo, hi)
    return ((image - lo) / np.maximum(hi - lo, 1e-8) if rescale else image), mask


@TRANSFORMS.register("zscore")
def zscore(image, mask, record, region="nonzero"):
    """Per-channel z-score; statistics inside the brain/foreground (``nonzero`` voxels) or ``all``."""
    image = image.astype(np.float32)
    out = np.zeros_like(image)
    for c in range(image.shape[0]):
        inside = image[c] != 0 if region == "nonzero" else np.ones(image.shape[1:], bool)
        if not inside.any():
            continue
        values = image[c][inside]
        out[c] = np.where(inside, (image[c] - values.mean()) / max(float(values.std()), 1e-8), 0.0)
    return out, mask


def map_labels(labels: np.ndarray, rules: dict[str, LabelRule]) -> np.ndarray:
    """Raw label map ``(*spatial)`` -> multi-label float mask ``(K, *spatial)``, one channel per region."""
    out = np.zeros((len(rules),) + labels.shape, dtype=np.float32)
    for k, rule in enumerate(rules.values()):
        out[k] = labels != 0 if rule == "nonzero" else np.isin(labels, rule)
    return out


def _run_step(step: dict[str, Any], image, mask, record):
    params = {k: v for k, v in step.items() if k not in ("name", "scope")}
    return TRANSFORMS.get(step["name"])(image, mask, record, **params)


def normalise_slices(slices: list[np.ndarray], config: PreprocessConfig) -> list[np.ndarray]:
    """Run the volume-scope steps over the slices of one volume together.

    The steps are per-channel and voxel-wise once their statistics are known, so the slices are
    laid side by side as ``(C, voxels)`` (their shapes may differ) and cut apart again.

    Shape:
        each slice ``(C, H, W)`` any dtype -> the same shape, float32. Unchanged without volume steps.
    """
    steps = config.steps if config.dims == 3 else config.volume_steps
    if not steps or not slices:
        return slices
    sizes = [s[0].size for s in slices]
    values = np.concatenate([s.reshape(s.shape[0], -1).astype(np.float32) for s in slices], axis=1)
    for step in steps:
        values, _ = _run_step(step, values, None, [])
    parts = np.split(values, np.cumsum(sizes)[:-1], axis=1)
    return [p.reshape(s.shape).astype(np.float32) for p, s in zip(parts, slices)]


def label_image(mask: np.ndarray, rules: dict[str, LabelRule]) -> np.ndarray | None:
    """The inverse of :func:`map_labels`: a ``(K, *spatial)`` 0/1 mask as one label map in the source's values.

    As nnU-Net converts regions back, labels are painted from the largest region to the smallest,
    each with a value of its own that no smaller region holds, so the smaller region wins where
    they overlap: BraTS WT/TC/ET go back to 2/1/4, exclusive classes to their own values. A
    ``nonzero`` rule beside others is the largest region; it paints the smallest positive value
    no other rule names.

    Returns:
        ``(*spatial)`` uint8 (uint16 for values above 255); None for one ``nonzero`` label, which has
        no source value to restore (writers store it as 0/255 or 0/1).
    """
    if len(rules) == 1 and next(iter(rules.values())) == "nonzero":
        return None
    named = {v for rule in rules.values() if rule != "nonzero" for v in rule}
    spare = next(v for v in range(1, len(named) + 2) if v not in named)
    members = [set(named | {spare}) if rule == "nonzero" else set(rule) for rule in rules.values()]
    order = sorted(range(len(members)), key=lambda k: -len(members[k]))  # stable: ties keep the rules' order
    out = np.zeros(mask.shape[1:], dtype=np.uint8 if max(named | {spare}) <= 255 else np.uint16)
    for i, k in enumerate(order):
        smaller = set().union(*(members[j] for j in order[i + 1:]))
        out[mask[k] > 0] = min(members[k] - smaller or members[k])
    return out


def apply_steps(image: np.ndarray, mask: np.ndarray | None, config: PreprocessConfig, volume_normalised: bool = False,
                spacing: tuple[float, ...] | None = None):
    """Run the configured steps on one 2D example, or on one whole volume of a 3D config.

    Args:
        volume_normalised: the volume-scope steps already ran over the slice's volume
            (:func:`normalise_slices`); otherwise they run on this slice alone, its own volume.
        spacing: 3D: the volume's voxel spacing, in its (reoriented) axis order; with
            ``config.spacing`` the volume is resampled to it (recorded, so it can be inverted).
    Shape:
        image ``(C, H, W)`` any dtype -> ``(C, h, w)`` float32; mask ``(K, H, W)`` -> ``(K, h, w)``;
        3D: ``(C, I, J, S)`` -> ``(C, i, j, s)``.
    Returns:
        (image, mask, geometry record).
    """
    record: list[dict] = []
    image = image.astype(np.float32)
    for step in config.slice_steps if volume_normalised else config.steps:
        image, mask = _run_step(step, image, mask, record)
    if config.dims == 3 and config.spacing is not None and spacing is not None:
        image, mask = resample_volume(image, mask, spacing, config.spacing, record)
    return image.astype(np.float32), (None if mask is None else mask.astype(np.float32)), record


def resampled_shape(shape: tuple[int, ...], spacing: tuple[float, ...], target: list[float]) -> tuple[int, ...]:
    """The voxel counts of a volume of ``shape`` at ``spacing`` once resampled to ``target`` spacing."""
    return tuple(max(1, round(n * s / t)) for n, s, t in zip(shape, spacing, target))


def resample_volume(image: np.ndarray, mask: np.ndarray | None, spacing, target: list[float], record: list[dict]):
    """Resample ``(C, I, J, S)`` (trilinear) and its ``(K, I, J, S)`` mask to ``target`` spacing.

    The mask goes through the same trilinear map and is thresholded at 0.5, as nnU-Net resamples
    segmentations, so thin structures do not vanish the way nearest-neighbour sampling drops them.
    """
    shape = resampled_shape(image.shape[1:], tuple(spacing), target)
    record.append({"op": "resample", "from": list(image.shape[1:]), "to": list(shape)})
    image = _interpolate3d(image, shape)
    if mask is not None:
        mask = (_interpolate3d(mask, shape) > 0.5).astype(np.float32)
    return image, mask


def _interpolate3d(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    if tuple(array.shape[1:]) == tuple(shape):
        return np.asarray(array, np.float32)
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]
    return F.interpolate(tensor, size=tuple(shape), mode="trilinear", align_corners=False)[0].numpy()


def reoriented_spacing(spacing: tuple[float, ...], transform: list | None) -> tuple[float, ...]:
    """A volume's voxel spacing in the axis order :func:`reorient` left it in."""
    if transform is None:
        return tuple(float(s) for s in spacing)
    out = [0.0] * len(transform)
    for axis, (target, _) in enumerate(transform):
        out[int(target)] = float(spacing[axis])
    return tuple(out)


def invert_geometry(array: np.ndarray, record: list[dict], mode: Literal["nearest", "linear"] = "nearest") -> np.ndarray:
    """Map a model-space ``(K, h, w)`` prediction back to the original ``(K, H, W)`` slice grid
    (or ``(K, i, j, s)`` back to ``(K, I, J, S)`` for a resampled volume; probabilities only)."""
    for op in reversed(record):
        if op["op"] == "resample":
            array = _interpolate3d(array, tuple(op["from"]))
        elif op["op"] == "resize":
            array = _interpolate(array, tuple(op["from"]), mode)
        elif op["op"] == "crop":
            h, w = op["from"]
            array = _crop(array, -op["top"], -op["left"], h, w)
    return array


def stack_channels(scans: list[Scan], channels: list[str], wanted: list[str] | None) -> np.ndarray:
    """Concatenate the files of one case on the channel axis and pick ``wanted`` channels by name."""
    first = scans[0]
    for other in scans[1:]:
        if other.spatial_shape != first.spatial_shape:
            raise ScanReadError(other.source, f"shape {other.spatial_shape} differs from {first.source} {first.spatial_shape}")
    array = np.concatenate([s.array for s in scans], axis=0)
    if len(channels) != array.shape[0]:
        raise ScanReadError(first.source, f"manifest names {len(channels)} channels, files hold {array.shape[0]}")
    if wanted is None:
        return array
    missing = [c for c in wanted if c not in channels]
    if missing:
        raise ScanReadError(first.source, f"channels {missing} not in this case (has {channels})")
    return array[[channels.index(c) for c in wanted]]


def reorient(array: np.ndarray, affine: np.ndarray, target: str | None):
    """Reorder/flip the spatial axes of ``(C, I, J, K)`` to ``target`` codes; returns (array, affine, transform)."""
    import nibabel.orientations as nio

    if target is None:
        return array, affine, None
    current = nio.io_orientation(affine)
    transform = nio.ornt_transform(current, nio.axcodes2ornt(tuple(target)))
    out = np.stack([nio.apply_orientation(c, transform) for c in array])
    new_affine = affine @ nio.inv_ornt_aff(transform, array.shape[1:])
    return out, new_affine, transform.tolist()


def restore_orientation(array: np.ndarray, transform: list | None) -> np.ndarray:
    """Undo :func:`reorient` on a ``(K, I, J, K)`` prediction volume."""
    import nibabel.orientations as nio

    if transform is None:
        return array
    inverse = _invert_ornt(np.asarray(transform, float))
    return np.stack([nio.apply_orientation(c, inverse) for c in array])


def _invert_ornt(transform: np.ndarray) -> np.ndarray:
    inverse = np.zeros_like(transform)
    for axis, (target, flip) in enumerate(transform):
        inverse[int(target)] = [axis, flip]
    return inverse


def iter_examples(row: dict, config: PreprocessConfig, with_mask: bool = True, seed: int = 0) -> Iterator[dict]:
    """Read one manifest row and yield its preprocessed 2D example(s).

    A volume row yields its selected slices (the volume is read once); a slice row yields one
    example (cut at ``slice_index`` when its file is a volume).

    Yields:
        dicts with ``case_id``, ``slice_index``, ``image`` ``(C, h, w)`` float32, ``mask``
        ``(K, h, w)`` float32 (when the row has one and ``with_mask``), and ``geometry`` (JSON-able).
    """
    from raysegment.manifest import select_slices
    from raysegment.readers import read_mask, read_scan

    uris = list(row["image_uris"])
    scans = [read_scan(u) for u in uris]
    image = stack_channels(scans, list(row["channels"]), config.channels)
    has_mask = with_mask and row.get("mask_uri") is not None and not _isna(row.get("mask_uri"))
    mask = None
    if has_mask:
        labels = read_mask(row["mask_uri"])
        if labels.spatial_shape != scans[0].spatial_shape:
            raise ScanReadError(row["mask_uri"], f"mask shape {labels.spatial_shape} differs from image {scans[0].spatial_shape}")
        mask = map_labels(labels.array[0], config.labels)
    orientation = None
    if image.ndim == 4:
        image, _, orientation = reorient(image, scans[0].affine, config.orientation)
        if mask is not None:
            mask, _, _ = reorient(mask, scans[0].affine, config.orientation)
        if row.get("slice_index") is not None and not _isna(row.get("slice_index")) and row.get("level") == "slice":
            indices = [int(row["slice_index"])]
        else:
            fg = set(np.flatnonzero(mask.any(axis=(0, 1, 2)))) if mask is not None else set()
            indices = select_slices(image.shape[-1], fg, mask is not None, config.slice_selection, np.random.default_rng(seed))
        # Volume statistics come from every slice of the file, whichever slices are used.
        image = normalise_slices([image], config)[0]
        for k in indices:
            yield _example(row, k, image[..., k], None if mask is None else mask[..., k], config, orientation, True)
    else:
        yield _example(row, row.get("slice_index"), image, mask, config, None)


def read_volume(row: dict, config: PreprocessConfig, with_mask: bool = True) -> dict:
    """Read one volume case whole and prepare it for a 3D model (``config.dims == 3``).

    Returns:
        ``case_id``; ``raw`` ``(C, I, J, S)`` and ``truth`` ``(K, I, J, S)`` (when the row has a
        mask and ``with_mask``) on the scan's own grid, reoriented; ``spacing`` of that grid
        (``file_spacing`` in the file's axis order);
        ``image`` ``(C, i, j, s)`` float32 and ``mask`` ``(K, i, j, s)`` after the steps and the
        resampling; ``geometry`` (``steps`` record and ``orientation``) to map a prediction back.
    """
    from raysegment.readers import read_mask, read_scan

    scans = [read_scan(u) for u in list(row["image_uris"])]
    if not scans[0].is_volume:
        raise ScanReadError(scans[0].source, f"a 3D model needs a volume, this file holds one {scans[0].spatial_shape} slice")
    image = stack_channels(scans, list(row["channels"]), config.channels)
    image, _, orientation = reorient(image, scans[0].affine, config.orientation)
    truth = None
    if with_mask and row.get("mask_uri") is not None and not _isna(row.get("mask_uri")):
        labels = read_mask(row["mask_uri"])
        if labels.spatial_shape != scans[0].spatial_shape:
            raise ScanReadError(row["mask_uri"], f"mask shape {labels.spatial_shape} differs from image {scans[0].spatial_shape}")
        truth, _, _ = reorient(map_labels(labels.array[0], config.labels), scans[0].affine, config.orientation)
    spacing = reoriented_spacing(scans[0].spacing, orientation)
    prepared, mask, record = apply_steps(normalise_slices([image], config)[0], truth, config, volume_normalised=True, spacing=spacing)
    out = {"case_id": row["case_id"], "raw": image, "spacing": spacing, "file_spacing": scans[0].spacing, "image": prepared,
           "geometry": {"steps": record, "orientation": orientation}}
    if truth is not None:
        out.update(truth=truth, mask=mask)
    return out


def iter_volume_examples(rows: list[dict], config: PreprocessConfig, with_mask: bool = True,
                         keep: set[str] | None = None) -> Iterator[dict]:
    """The examples of the slice rows of one patient volume, its volume-scope steps run over all of them.

    Args:
        rows: every slice row of the volume (the statistics need them all).
        keep: the ``case_id`` of the slices to yield (a training slice selection); default all.
    Yields:
        what :func:`iter_examples` yields, in the order of ``rows``.
    """
    if not config.volume_steps and keep is not None:
        rows = [row for row in rows if row["case_id"] in keep]  # nothing needs the others
    raw = config.model_copy(update={"steps": []})
    examples = [ex for row in rows for ex in iter_examples(row, raw, with_mask=with_mask)]
    images = normalise_slices([ex["image"] for ex in examples], config)
    for row, ex, image in zip(rows, examples, images):
        if keep is None or row["case_id"] in keep:
            yield _example(row, row.get("slice_index"), image, ex.get("mask"), config, None, True)


def _example(row, index, image, mask, config, orientation, volume_normalised=False) -> dict:
    image, mask, record = apply_steps(image, mask, config, volume_normalised)
    out = {
        "case_id": row["case_id"],
        "slice_index": -1 if index is None or _isna(index) else int(index),
        "image": image,
        "geometry": {"steps": record, "orientation": orientation},
    }
    if mask is not None:
        out["mask"] = mask
    return out


def _isna(value) -> bool:
    try:
        return bool(np.isnan(value))
    except TypeError:
        return value is None

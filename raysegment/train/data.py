"""Manifest rows -> Ray Datasets of preprocessed 2D examples, read in parallel Ray tasks.

The driver only reads the manifest (metadata); every scan is read and preprocessed inside a
``flat_map`` task by :func:`raysegment.preprocess.iter_examples`, so no image passes through the
driver. Volume rows stay whole (one task reads a volume once and yields its selected slices);
2D slice rows are filtered with :func:`raysegment.manifest.slice_view` and read by patient volume,
so volume-scope preprocessing sees every slice of the patient, selected for training or not.

For 3D models (``preprocess.dims == 3``) each volume becomes one whole preprocessed example, and
the training set draws random patches of them (:mod:`raysegment.train.patches`) anew every epoch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from raysegment.errors import ConfigError
from raysegment.manifest import read_manifest, slice_view
from raysegment.preprocess import PreprocessConfig, iter_examples, iter_volume_examples, read_volume


@dataclass
class SplitRows:
    """The manifest rows of one split, ready to become a dataset.

    Attributes:
        rows: the rows to train or validate on.
        volumes: every labeled row of the split's volumes, the slices the selection left out too.
    """

    name: str
    rows: pd.DataFrame
    volumes: pd.DataFrame | None = None

    @property
    def cases(self) -> int:
        return len(self.rows)


def select_rows(df: pd.DataFrame, split: str, preprocess: PreprocessConfig, seed: int = 0,
                max_cases: int | None = None) -> pd.DataFrame:
    """Labeled rows of ``split`` after the slice selection (slice rows) and the ``max_cases`` cap."""
    part = labeled_rows(df, split, max_cases)
    slices = part[part["level"] == "slice"]
    if len(slices) and preprocess.slice_selection != "all":
        slices = slice_view(slices, preprocess.slice_selection, seed)
    return pd.concat([slices, part[part["level"] == "volume"]], ignore_index=True)


def labeled_rows(df: pd.DataFrame, split: str, max_cases: int | None = None) -> pd.DataFrame:
    """Rows of ``split`` that have a mask, the first ``max_cases`` of them."""
    part = df[(df["split"] == split) & df["mask_uri"].notna()]
    return part if max_cases is None else part.iloc[:max_cases]


def validation_rows(df: pd.DataFrame, split: str, max_cases: int | None = None) -> pd.DataFrame:
    """Labeled rows of the validation ``split``: every slice of each patient, whatever training samples.

    A patient is scored on all of its slices, as evaluation scores it; ``max_cases`` caps whole
    volumes, never cutting one.
    """
    part = df[(df["split"] == split) & df["mask_uri"].notna()]
    if max_cases is not None:
        keys = part["volume_id"].fillna(part["case_id"]) if "volume_id" in part else part["case_id"]
        part = part[keys.isin(list(dict.fromkeys(keys))[:max_cases])]
    return part.reset_index(drop=True)


def input_channels(df: pd.DataFrame, preprocess: PreprocessConfig, uri: str = "manifest") -> list[str]:
    """The channel names the model sees: the configured ones, or those of the manifest's cases."""
    if preprocess.channels is not None:
        return list(preprocess.channels)
    names = {tuple(c) for c in df["channels"]}
    if len(names) != 1:
        raise ConfigError(f"{uri}: cases have different channels {sorted(names)}; set data.preprocess.channels")
    return list(names.pop())


def _examples(item: dict, preprocess: dict, seed: int) -> list[dict]:
    """``flat_map`` task: one volume's rows -> its examples (image, mask, and the volume and slice they belong to)."""
    config = PreprocessConfig.model_validate(preprocess)
    rows, keep = json.loads(item["rows"]), set(json.loads(item["keep"]))
    if config.dims == 3:
        volume = read_volume(rows[0], config, with_mask=True)
        return [{"image": volume["image"], "mask": volume["mask"], "volume": item["volume"], "slice": -1}]
    if len(rows) == 1 and rows[0].get("level") != "slice":
        examples = iter_examples(rows[0], config, with_mask=True, seed=seed)
    else:
        examples = iter_volume_examples(rows, config, with_mask=True, keep=keep)
    return [{"image": ex["image"], "mask": ex["mask"], "volume": item["volume"], "slice": ex["slice_index"]} for ex in examples]


def build_dataset(rows: pd.DataFrame, preprocess: PreprocessConfig, seed: int = 0, cache: bool = True,
                  parallelism: int | None = None, volumes: pd.DataFrame | None = None):
    """A Ray Dataset of training examples ``{image (C,h,w), mask (K,h,w)}``, one read task per block of volumes.

    A 3D config yields one ``{image (C,d,h,w), mask (K,d,h,w)}`` per volume, at its own size
    (:func:`patch_dataset` cuts the training patches).

    Args:
        rows: manifest rows to yield examples of.
        volumes: every row of those rows' volumes (:attr:`SplitRows.volumes`), read for
            volume-scope preprocessing only; default ``rows``.
        cache: materialize the preprocessed examples in the object store, so later epochs do not
            read and preprocess the scans again.
        parallelism: blocks of volumes (read tasks); default one per volume, at most 64.
    """
    import ray.data

    records = [plain_row(r) for r in rows.to_dict(orient="records")]
    keys = list(dict.fromkeys(volume_key(r) for r in records))
    context = records if volumes is None else [plain_row(r) for r in volumes.to_dict(orient="records")]
    members: dict[str, list[dict]] = {key: [] for key in keys}
    for record in context:
        members.get(volume_key(record), []).append(record)
    kept: dict[str, list[str]] = {key: [] for key in keys}
    for record in records:
        kept[volume_key(record)].append(record["case_id"])
    # Validation scores each patient volume: examples carry the index of theirs (tensors take no strings).
    items = [{"volume": i, "rows": json.dumps(members[key], default=str),
              "keep": json.dumps(kept[key])} for i, key in enumerate(keys)]
    blocks = parallelism or max(1, min(len(items), 64))
    ds = ray.data.from_items(items, override_num_blocks=blocks)
    ds = ds.flat_map(_examples, fn_kwargs={"preprocess": preprocess.model_dump(mode="json"), "seed": seed})
    return ds.materialize() if cache else ds


def patch_dataset(volumes, patch_size: list[int], per_volume: int, augment: dict | None, seed: int | None = None):
    """The training patches of a dataset of whole volumes (:func:`build_dataset` of a 3D config).

    The sampling and augmentation tasks run after the cached volumes, so each epoch draws anew.
    """
    from raysegment.train.patches import sample_patches

    return volumes.flat_map(sample_patches, fn_kwargs={"patch_size": list(patch_size), "per_volume": per_volume,
                                                       "augment": augment, "seed": seed})


def augmented_dataset(examples, augment: dict, batch_size: int = 32):
    """The training examples of a 2D dataset augmented in Ray Data tasks (:func:`raysegment.train.augment.augment_batch`).

    The tasks run after the cached examples, so each epoch draws anew; without an active
    augmentation the dataset is returned as it is.
    """
    from raysegment.train.augment import Augmenter, augment_batch
    from raysegment.train.config import AugmentConfig

    if not Augmenter(AugmentConfig.model_validate(augment)).active:
        return examples
    return examples.map_batches(augment_batch, fn_kwargs={"augment": augment}, batch_size=batch_size, batch_format="numpy")


def volume_key(row: dict) -> str:
    """The patient volume a case belongs to: its ``volume_id`` (slice datasets), else the case itself."""
    return row.get("volume_id") or row["case_id"]


def plain_row(row: dict) -> dict:
    """Manifest row values as plain Python (numpy arrays of lists -> lists, NA -> None)."""
    out = {}
    for key, value in row.items():
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif value is not None and not isinstance(value, (list, str)) and pd.isna(value):
            value = None
        out[key] = value
    return out


def load_splits(manifest: str, preprocess: PreprocessConfig, splits: list[str], seed: int = 0,
                max_cases: int | None = None, validation: tuple[str, ...] = ()) -> tuple[pd.DataFrame, dict[str, SplitRows]]:
    """Read the manifest once and select each split's rows; an empty split is a ConfigError.

    Args:
        validation: splits read whole (:func:`validation_rows`) rather than through the slice selection.
    """
    df = read_manifest(manifest)
    out = {}
    for split in splits:
        rows = validation_rows(df, split, max_cases) if split in validation else select_rows(df, split, preprocess, seed, max_cases)
        if not len(rows):
            raise ConfigError(f"{manifest}: no labeled cases in split {split!r}")
        out[split] = SplitRows(split, rows, labeled_rows(df, split, max_cases) if split not in validation else rows)
    return df, out

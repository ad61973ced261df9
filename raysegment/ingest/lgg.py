"""Kaggle "lgg-mri-segmentation" (``kaggle_3m/``): TCGA lower-grade glioma FLAIR slices.

Layout: a folder per patient scan ``TCGA_XX_NNNN_YYYYMMDD/`` holding ``<folder>_<k>.tif`` (RGB:
pre-contrast, FLAIR, post-contrast) and ``<folder>_<k>_mask.tif``; ``data.csv`` and a README sit
beside them and are not scans. Images and masks are paired by (folder, k) only: an image without
a mask or a mask without an image is reported and left out, never paired with a neighbour.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raysegment import storage
from raysegment.ingest.base import IMPORTERS, Discovery

PATIENT_DIR = re.compile(r"^(?P<patient>TCGA_[A-Z0-9]{2}_[A-Z0-9]{4})_(?P<date>\d{8})$")
SLICE_FILE = re.compile(r"^(?P<stem>.+)_(?P<k>\d{1,9})(?P<mask>_mask)?\.tiff?$", re.IGNORECASE)  # k fits the int64 column
#: What follows ``<folder>_`` in the name of a slice or mask named as the layout says (``SLICE_FILE``'s case aside).
USUAL_END = r"^(?P<k>\d{1,9})(?P<mask>_mask)?\.(?i:tiff?)$"
FOLDER_LENGTH = len("TCGA_XX_NNNN_YYYYMMDD")
CHANNELS = ["pre-contrast", "flair", "post-contrast"]
#: A slice's or mask's file: its position in the listing, URI, patient folder, slice number and kind.
_COLUMNS = pa.schema([("index", pa.int64()), ("uri", pa.string()), ("folder", pa.string()), ("k", pa.int64()), ("is_mask", pa.bool_())])


@IMPORTERS.register("lgg")
def discover(src: str, files: list[str] | None = None, **_) -> Discovery:
    found = Discovery()
    uris = pa.array(storage.list_files(src) if files is None else files, pa.string())
    usual = _usual(uris)
    listed = pa.concat_tables([usual, _the_long_way(uris, usual["index"], found.problems)])
    found.rows = _rows(_pairs(listed, found.problems))
    return found


def _the_long_way(uris: pa.Array, usual: pa.Array, problems: list[str]) -> pa.Table:
    """The ``_COLUMNS`` of the other files that are slices or masks; a problem line for each TIFF that is not."""
    unusual = np.ones(len(uris), dtype=bool)
    unusual[usual.to_numpy()] = False
    found: dict[str, list] = {name: [] for name in _COLUMNS.names}
    for index in np.flatnonzero(unusual):
        uri = uris[index].as_py()
        folder, name = ["", *uri.rsplit("/", 2)][-2:]
        if not name.lower().endswith((".tif", ".tiff")):
            continue  # data.csv, README and other side files
        match = SLICE_FILE.match(name)
        if not PATIENT_DIR.match(folder):
            problems.append(f"{uri}: TIFF outside a TCGA_XX_NNNN_YYYYMMDD patient folder, left out")
        elif not match or match["stem"] != folder:
            problems.append(f"{uri}: name does not follow {folder}_<k>[_mask].tif, left out")
        else:
            for column, value in zip(found, (int(index), uri, folder, int(match["k"]), bool(match["mask"]))):
                found[column].append(value)
    return pa.table(found, schema=_COLUMNS)


def _pairs(listed: pa.Table, problems: list[str]) -> pa.Table:
    """``folder``, ``k``, ``uri`` and ``mask_uri`` of each slice with both files, by folder and slice number; a
    problem line for each file without its partner.

    Paired on integer codes of (folder, slice number): hash joins over 10^5 string keys would cost
    an archive's worth of memory again.
    """
    codes = _case_ids(listed).combine_chunks().dictionary_encode().indices
    codes, is_mask, index = codes.to_numpy(), listed["is_mask"].to_numpy(), listed["index"].to_numpy()
    # Two names of one slice (``_1.tif`` and ``_01.TIF``): the later in the listing is kept, as a re-upload would be.
    order = np.lexsort((index, is_mask, codes))
    last_of_kind = np.append((np.diff(codes[order]) != 0) | (np.diff(is_mask[order].astype(np.int8)) != 0), True)
    latest = order[last_of_kind[: len(order)]]
    images, masks = latest[~is_mask[latest]], latest[is_mask[latest]]  # each in code order
    paired_images, paired_masks = np.isin(codes[images], codes[masks]), np.isin(codes[masks], codes[images])
    by_key = [("folder", "ascending"), ("k", "ascending")]
    for lonely, without in ((images[~paired_images], "image without a mask"), (masks[~paired_masks], "mask without an image")):
        problems += [f"{uri}: {without}, left out" for uri in listed.take(lonely).sort_by(by_key)["uri"].to_pylist()]
    pairs = listed.take(images[paired_images]).append_column("mask_uri", listed["uri"].take(masks[paired_masks]))
    return pairs.sort_by(by_key)


def _rows(pairs: pa.Table) -> pa.Table:
    """Manifest rows, built column-wise: archives hold 10^5 slices, and a dict per row costs more than the rest."""
    folders, k = pairs["folder"], pairs["k"]
    offsets = np.arange(len(pairs) + 1, dtype=np.int32)
    return pa.table({
        "case_id": _case_ids(pairs),
        "patient_id": pc.utf8_slice_codeunits(folders, 0, len("TCGA_XX_NNNN")),  # every folder matched PATIENT_DIR
        "dataset": pa.repeat("lgg", len(pairs)),
        "level": pa.repeat("slice", len(pairs)),
        "image_uris": pa.ListArray.from_arrays(offsets, pairs["uri"].combine_chunks()),
        "channels": pa.ListArray.from_arrays(offsets * len(CHANNELS), pa.array(CHANNELS * len(pairs), pa.string())),
        "mask_uri": pairs["mask_uri"],
        "slice_index": pc.subtract(k, 1),
        "volume_id": folders,
        "format": pa.repeat("tiff", len(pairs)),
    })


def _case_ids(files: pa.Table) -> pa.ChunkedArray:
    """``<folder>_<k>`` of each row: the case a slice's image and mask share (``_01`` and ``_1`` alike)."""
    return pc.binary_join_element_wise(files["folder"], pc.cast(files["k"], pa.string()), "_")


def _usual(uris: pa.Array) -> pa.Table:
    """The ``_COLUMNS`` of the files named exactly as the layout says.

    Column-wise, in Arrow: archives hold 10^5 files, and a Python step per file is most of what
    finding their cases costs.
    """
    parts = pc.split_pattern(uris, "/", max_splits=2, reverse=True)
    index = pc.indices_nonzero(pc.equal(pc.list_value_length(parts), 3))  # a folder and a name, at least
    parts = parts.take(index)
    folder, name = pc.list_element(parts, 1), pc.list_element(parts, 2)
    end = pc.extract_regex(pc.utf8_slice_codeunits(name, FOLDER_LENGTH + 1), USUAL_END)
    ok = pc.and_(pc.and_(pc.match_substring_regex(folder, PATIENT_DIR.pattern),
                         pc.equal(pc.utf8_slice_codeunits(name, 0, FOLDER_LENGTH + 1), pc.binary_join_element_wise(folder, "_", ""))),
                 end.is_valid())
    end = end.filter(ok)
    index = pc.cast(index.filter(ok), pa.int64())
    return pa.table({"index": index, "uri": uris.take(index), "folder": folder.filter(ok),
                     "k": pc.cast(pc.struct_field(end, "k"), pa.int64()), "is_mask": pc.not_equal(pc.struct_field(end, "mask"), "")},
                    schema=_COLUMNS)

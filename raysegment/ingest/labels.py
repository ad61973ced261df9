"""Label definitions: from a dataset's own description to ``data.preprocess.labels``, kept in the manifest.

The manifest schema has one row per case and no place for what the label values mean, so the
importers that know it (``msd``, ``nnunet``; ``table`` names the values it finds) store it in the
Parquet file's key-value metadata under :data:`METADATA_KEY`, as JSON ``{name: [values]}``: exactly
the ``data.preprocess.labels`` of a training job. Background (value 0) is not a class there, so it
is left out. A manifest rewritten through a DataFrame loses the key; :func:`labels_of` then says so.
"""

from __future__ import annotations

import io
import json

import pyarrow as pa

from raysegment import storage

METADATA_KEY = b"raysegment.labels"
#: nnU-Net's name for voxels nobody annotated; raysegment has no such value, they count as background.
IGNORE = "ignore"


def foreground_labels(declared: dict[str, list[int]], source: str) -> tuple[dict[str, list[int]], list[str]]:
    """The training classes of declared ``{name: values}`` (background and nnU-Net's ignore label dropped), and problems."""
    labels, problems = {}, []
    for name, values in declared.items():
        kept = sorted({int(v) for v in values} - {0})
        if name.lower() == IGNORE:
            problems.append(f"{source}: label {name!r} (values {kept}) marks unannotated voxels; raysegment has no ignore label, "
                            "they are read as background")
        elif kept:
            labels[name] = kept
    return labels, problems


def check_labels(labels: dict[str, list[int]] | None, source: str, seen: dict[str, set[int]]) -> tuple[dict[str, list[int]], list[str]]:
    """Declared labels against the values the label files hold.

    A declared label that occurs in no label file is a problem, not an error: the other classes
    are still learnable, and a subset of a dataset may lack a rare class. It is left out of the
    returned labels because a class with no voxel can neither be learned nor scored. Values that
    occur but are not declared are reported per file (they are read as background).

    Args:
        labels: foreground ``{name: values}`` declared by ``source``; None when the dataset declares
            none, in which case every value found becomes a class ``label_<value>``.
        source: the file that declared them (``dataset.json``, the case table), named in problems.
        seen: label file -> the values it holds (0 included), for every labeled case ingested.
    Returns:
        (the labels to train on, problems).
    """
    found = set().union(*seen.values()) - {0} if seen else set()
    if labels is None:
        return {f"label_{v}": [v] for v in sorted(found)}, []
    problems = []
    if seen:
        for name, values in labels.items():
            if not found & set(values):
                problems.append(f"{source}: label {name!r} (values {values}) occurs in none of the {len(seen)} label files, "
                                "left out of the training labels")
        declared = {v for values in labels.values() for v in values}
        for uri, values in sorted(seen.items()):
            extra = sorted(values - declared - {0})
            if extra:
                problems.append(f"{uri}: values {extra} are not labels of {storage.basename(source)}, read as background")
    return {name: values for name, values in labels.items() if not seen or found & set(values)}, problems


def with_labels(table: pa.Table, labels: dict[str, list[int]]) -> pa.Table:
    """``table`` with ``labels`` in its schema metadata (the other keys, e.g. pandas', kept)."""
    return table.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: json.dumps(labels).encode()})


def labels_of(manifest_uri: str) -> dict[str, list[int]] | None:
    """The ``data.preprocess.labels`` an importer stored in a manifest (local or ``s3://``), or None if it stored none."""
    import pyarrow.parquet as pq

    metadata = pq.read_schema(io.BytesIO(storage.read_bytes(manifest_uri))).metadata or {}
    return json.loads(metadata[METADATA_KEY]) if METADATA_KEY in metadata else None


def flow(labels: dict[str, list[int]]) -> str:
    """``labels`` as one line of YAML (flow style), for ``--set data.preprocess.labels=...``."""
    return "{" + ", ".join(f"{json.dumps(name)}: {values}" for name, values in labels.items()) + "}"


def training_hint(labels: dict[str, list[int]], channels: list[str]) -> str:
    """What to tell a user after ingesting: the ``data.preprocess`` of a training job, as option and as YAML."""
    return "\n".join([
        "labels stored in the manifest; train on them with",
        f"  --set 'data.preprocess.labels={flow(labels)}'",
        "or in a job file (--config):",
        "  data:",
        "    preprocess:",
        f"      channels: [{', '.join(json.dumps(c) for c in channels)}]",
        f"      labels: {flow(labels)}",
    ])

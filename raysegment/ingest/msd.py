"""Medical Segmentation Decathlon (``Task01_BrainTumour`` .. ``Task10_Colon``): a folder described by ``dataset.json``.

Layout: ``dataset.json``, ``imagesTr/<case>.nii.gz``, ``labelsTr/<case>.nii.gz``, ``imagesTs/<case>.nii.gz``.
The JSON lists the training pairs (``{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}``)
and the test images, which have no labels and become ``unlabeled`` rows. Several modalities live in
one 4D file (``(i, j, k, modality)``) named by ``"modality": {"0": "FLAIR", ...}``; ``"labels": {"0":
"background", "1": ...}`` names the label values. MSD has no patient ids: each case is its own patient.

Quirks: the published archives hold a macOS ``._<case>.nii.gz`` beside every file (ignored, counted
in one problem); files the JSON does not list are reported and left out; a listed file that does not
exist is an error, as is a modality count other than the images' 4th axis.
"""

from __future__ import annotations

import posixpath

from raysegment import storage
from raysegment.ingest.base import IMPORTERS, DatasetError, Discovery
from raysegment.ingest.labels import foreground_labels
from raysegment.ingest.volumes import Case, add_cases, read_json, stem

FOLDERS = ("imagesTr", "labelsTr", "imagesTs")


def numbered(described: dict, key: str, uri: str) -> dict[int, str]:
    """``{"0": "FLAIR", ...}`` as ``{0: "FLAIR", ...}`` in value order; anything else is a :class:`DatasetError`."""
    value = described.get(key)
    try:
        out = {int(k): str(v) for k, v in value.items()}
    except (AttributeError, TypeError, ValueError):
        out = None
    if not out:
        raise DatasetError(f"{uri}: {key!r} must map numbers to names, e.g. {{\"0\": \"MRI\"}}; found {value!r}")
    return dict(sorted(out.items()))


def _entries(described: dict, key: str, field: str | None, uri: str) -> list:
    entries = described.get(key, [])
    if not isinstance(entries, list) or (field and not all(isinstance(e, dict) and field in e for e in entries)):
        raise DatasetError(f"{uri}: {key!r} must be a list of {f'entries with an {field!r} path' if field else 'paths'}")
    return entries


@IMPORTERS.register("msd")
def discover(src: str, **_) -> Discovery:
    json_uri = storage.join(src, "dataset.json")
    described = read_json(json_uri)
    channels = list(numbered(described, "modality", json_uri).values())
    declared: dict[str, list[int]] = {}
    for value, name in numbered(described, "labels", json_uri).items():
        declared.setdefault(name, []).append(value)
    found = Discovery(labels_from=json_uri)
    found.labels, found.problems = foreground_labels(declared, json_uri)

    def resolve(path) -> str:
        return storage.join(src, posixpath.normpath(str(path)))

    training = _entries(described, "training", "image", json_uri)
    test = [t["image"] if isinstance(t, dict) else t for t in _entries(described, "test", None, json_uri)]
    cases = [Case(stem(e["image"]), [resolve(e["image"])], resolve(e["label"]) if e.get("label") else None) for e in training]
    cases += [Case(stem(path), [resolve(path)]) for path in test]
    for key, listed in (("numTraining", len(training)), ("numTest", len(test))):
        if key in described and described[key] != listed:
            found.problems.append(f"{json_uri}: {key} is {described[key]} but it lists {listed} cases; the list is used")

    files = [u for folder in FOLDERS for u in storage.list_files(storage.join(src, folder))]
    present = set(files)
    named = [u for c in cases for u in (*c.image_uris, c.mask_uri) if u is not None]
    missing = [u for u in named if u not in present]
    if missing:
        more = f" ({len(missing) - 1} more listed files are missing)" if len(missing) > 1 else ""
        raise DatasetError(f"{json_uri}: lists {missing[0]}, which does not exist{more}")
    hidden = [u for u in files if storage.basename(u).startswith(".")]
    if hidden:
        found.problems.append(f"{src}: {len(hidden)} hidden files (._* macOS metadata beside the scans) ignored")
    for uri in sorted(present - set(named) - set(hidden)):
        found.problems.append(f"{uri}: not listed in dataset.json, left out")
    add_cases(found, cases, "msd", channels, json_uri)
    return found

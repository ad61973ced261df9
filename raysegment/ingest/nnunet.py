"""nnU-Net v2 raw datasets (``nnUNet_raw/DatasetXXX_Name``): one file per channel, described by ``dataset.json``.

Layout: ``imagesTr/<case>_0000<ending>`` (``_0001`` ... one file per channel, in the order of
``"channel_names": {"0": "T2", "1": "ADC"}``), ``labelsTr/<case><ending>``, ``imagesTs/`` (unlabeled
rows); the JSON also gives ``"labels": {"background": 0, "PZ": 1, ...}`` (a list value is a
region-based label, e.g. ``"whole_tumor": [1, 2, 3]``, which preprocessing maps as overlapping
regions, as BraTS's), ``numTraining`` and ``file_ending``. Each case is its own patient.

Errors (the JSON contradicts the files): ``numTraining`` other than the number of label files, a
case missing one of the named channels or holding one more, a ``file_ending`` no reader reads.
Problems (reported, left out): images without a label, labels without images, files named otherwise.
"""

from __future__ import annotations

import re
from collections import defaultdict

from raysegment import storage
from raysegment.ingest.base import IMPORTERS, DatasetError, Discovery
from raysegment.ingest.labels import foreground_labels
from raysegment.ingest.msd import numbered
from raysegment.ingest.volumes import Case, add_cases, read_json

CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def _labels(described: dict, uri: str) -> dict[str, list[int]]:
    labels = described.get("labels")
    try:
        return {str(name): [int(v) for v in (value if isinstance(value, list) else [value])] for name, value in labels.items()}
    except (AttributeError, TypeError, ValueError):
        raise DatasetError(f"{uri}: 'labels' must map names to a value or a list of values, e.g. "
                           f"{{\"background\": 0, \"tumor\": 1}}; found {labels!r}") from None


def _named(files: list[str], ending: str, found: Discovery) -> list[tuple[str, str]]:
    """(name without the ending, uri) of the files with ``ending``; others reported, hidden ones skipped."""
    out = []
    for uri in files:
        name = storage.basename(uri)
        if name.startswith("."):
            continue  # macOS ._ files and other hidden side files
        if name.endswith(ending):
            out.append((name[: -len(ending)], uri))
        else:
            found.problems.append(f"{uri}: does not end with the file_ending {ending!r}, left out")
    return out


def _cases(folder: str, ending: str, channels: list[str], uri: str, found: Discovery) -> dict[str, list[str]]:
    """Case -> its channel files in order, for one images folder."""
    by_case: dict[str, dict[int, str]] = defaultdict(dict)
    for name, file in _named(storage.list_files(folder), ending, found):
        match = CHANNEL_FILE.match(name)
        if match:
            by_case[match["case"]][int(match["channel"])] = file
        else:
            found.problems.append(f"{file}: not named <case>_<4-digit channel>{ending}, left out")
    out = {}
    for case, files in sorted(by_case.items()):
        extra = sorted(set(files) - set(range(len(channels))))
        if extra:
            raise DatasetError(f"{files[extra[0]]}: channel {extra[0]}, but {uri} names {len(channels)} channels ({', '.join(channels)})")
        missing = [k for k in range(len(channels)) if k not in files]
        if missing:
            raise DatasetError(f"{storage.join(folder, f'{case}_{missing[0]:04d}{ending}')}: missing; {uri} names "
                               f"{len(channels)} channels ({', '.join(channels)})")
        out[case] = [files[k] for k in range(len(channels))]
    return out


@IMPORTERS.register("nnunet")
def discover(src: str, **_) -> Discovery:
    from raysegment.readers import READERS

    uri = storage.join(src, "dataset.json")
    described = read_json(uri)
    if "channel_names" not in described and "modality" in described:
        raise DatasetError(f"{uri}: has 'modality' and no 'channel_names': an MSD or nnU-Net v1 dataset (raysegment ingest msd)")
    if "dataset" in described:
        raise DatasetError(f"{uri}: explicit 'dataset' file lists are not supported; put the files in imagesTr/ and labelsTr/")
    ending = described.get("file_ending")
    if not isinstance(ending, str) or not any(ending.lower().endswith(READERS.get(n).suffixes) for n in READERS):
        raise DatasetError(f"{uri}: file_ending {ending!r} is not a format raysegment reads ({', '.join(READERS.names())})")
    channels = list(numbered(described, "channel_names", uri).values())
    found = Discovery(labels_from=uri)
    found.labels, found.problems = foreground_labels(_labels(described, uri), uri)

    training = _cases(storage.join(src, "imagesTr"), ending, channels, uri, found)
    label_files = dict(_named(storage.list_files(storage.join(src, "labelsTr")), ending, found))
    if described.get("numTraining") != len(label_files):
        raise DatasetError(f"{uri}: numTraining is {described.get('numTraining')!r} but labelsTr/ holds {len(label_files)} label files")
    for case in sorted(training.keys() - label_files.keys()):
        found.problems.append(f"{training[case][0]}: image without a label in labelsTr/, left out")
    for case in sorted(label_files.keys() - training.keys()):
        found.problems.append(f"{label_files[case]}: label without images in imagesTr/, left out")
    cases = [Case(case, training[case], label_files[case]) for case in sorted(training.keys() & label_files.keys())]
    test = _cases(storage.join(src, "imagesTs"), ending, channels, uri, found)
    cases += [Case(case, files) for case, files in test.items()]
    add_cases(found, cases, "nnunet", channels, uri)
    return found

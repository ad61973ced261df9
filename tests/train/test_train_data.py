"""Training examples are read by patient volume: volume-scope steps see every slice, the selection keeps some."""

from __future__ import annotations

import numpy as np
import tifffile
from fixtures_data import zscore_inside

from raysegment.preprocess import PreprocessConfig
from raysegment.train.data import build_dataset, load_splits


def test_selected_slices_are_normalised_with_their_whole_patient(ray_session, lgg_manifest):
    config = PreprocessConfig(steps=[{"name": "zscore", "region": "nonzero", "scope": "volume"}], slice_selection="foreground")
    _, splits = load_splits(lgg_manifest, config, ["train"], seed=0)
    train = splits["train"]
    assert len(train.rows) < len(train.volumes)  # the selection left empty slices out
    examples = build_dataset(train.rows, config, cache=False, volumes=train.volumes).take_all()
    assert len(examples) == len(train.rows)

    by_volume = {v: part.sort_values("slice_index") for v, part in train.volumes.groupby("volume_id")}
    ordinal = {v: i for i, v in enumerate(dict.fromkeys(train.rows["volume_id"]))}
    selected = {(ordinal[r.volume_id], int(r.slice_index)) for r in train.rows.itertuples()}
    assert {(int(e["volume"]), int(e["slice"])) for e in examples} == selected
    for volume_id, part in by_volume.items():
        if volume_id not in ordinal:
            continue  # no slice of this patient was selected
        # The reference reads the TIFFs itself and z-scores each channel over every slice of the patient.
        stacked = np.stack([np.moveaxis(tifffile.imread(uris[0]), -1, 0) for uris in part["image_uris"]], axis=-1).astype(np.float64)
        expected = np.stack([zscore_inside(stacked[c]) for c in range(stacked.shape[0])])
        for example in (e for e in examples if e["volume"] == ordinal[volume_id]):
            k = list(part["slice_index"]).index(example["slice"])
            np.testing.assert_allclose(example["image"], expected[..., k], atol=1e-4)

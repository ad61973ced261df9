"""Ensembles of model folders: the averaged probabilities, loading, relocation, export and clear errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from raysegment.models import CheckpointError, ModelSpec, load_model, read_metadata, save_model
from raysegment.models.ensemble import Ensemble, copy_ensemble, member_uri, write_ensemble
from raysegment.postprocess import label_probabilities
from raysegment.preprocess import PreprocessConfig

REGIONS = PreprocessConfig(labels={"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]}, steps=[{"name": "zscore"}])
EXCLUSIVE = PreprocessConfig(labels={"anterior": [1], "posterior": [2]}, steps=[{"name": "zscore"}])


def member(uri, preprocess: PreprocessConfig, seed: int, in_channels: int = 2, **metadata) -> str:
    """A tiny U-Net with weights of its own (``seed``), saved as training saves its models."""
    torch.manual_seed(seed)
    spec = ModelSpec("unet", in_channels, preprocess.out_channels, {"base_channels": 4, "depth": 2})
    model = spec.build()
    with torch.no_grad():  # larger weights than the initialisation's, so the members disagree clearly
        for p in model.parameters():
            p.mul_(3.0)
    save_model(str(uri), model.eval(), spec, preprocess=preprocess.model_dump(mode="json"), class_names=preprocess.class_names,
               channels=[f"c{i}" for i in range(in_channels)], postprocess={"threshold": 0.4}, **metadata)
    return str(uri)


@pytest.mark.parametrize("preprocess", [REGIONS, EXCLUSIVE], ids=["sigmoid", "softmax"])
def test_ensemble_probabilities_are_the_mean_of_the_members(tmp_path, preprocess):
    members = [member(tmp_path / f"m{i}", preprocess, seed=i) for i in range(3)]
    uri = write_ensemble(str(tmp_path / "ensemble"), members)
    ensemble, metadata = load_model(uri)
    assert isinstance(ensemble, Ensemble) and not ensemble.training
    assert metadata["model"]["name"] == "ensemble" and metadata["model"]["classes"] == preprocess.out_channels
    assert metadata["class_names"] == preprocess.class_names and metadata["postprocess"] == {"threshold": 0.4}

    x = torch.randn(4, 2, 32, 32)
    with torch.no_grad():
        expected = [label_probabilities(load_model(m)[0](x), preprocess.exclusive) for m in members]  # each loaded on its own
        got = label_probabilities(ensemble(x), preprocess.exclusive)
    mean = torch.stack(expected).mean(0)
    torch.testing.assert_close(got, mean, atol=2e-6, rtol=0)
    spread = (torch.stack(expected) - mean).abs().amax()
    assert spread > 0.05  # the members disagree: an ensemble of one of them would fail the check above


def test_ensemble_logits_stay_finite_where_members_are_certain():
    class Certain(torch.nn.Module):
        """Logits ``values`` per channel everywhere: probabilities of exactly 0 and 1 in float32."""

        def __init__(self, *values: float):
            super().__init__()
            self.values = torch.nn.Parameter(torch.tensor(values), requires_grad=False)

        def forward(self, x):
            return self.values.reshape(1, -1, 1, 1).expand(len(x), -1, *x.shape[2:])

    x = torch.zeros(1, 2, 4, 4)
    regions = Ensemble([Certain(1e4, -1e4), Certain(1e4, -1e4)])(x)
    classes = Ensemble([Certain(1e4, -1e4), Certain(-1e4, 1e4)], exclusive=True)(x)
    assert torch.isfinite(regions).all() and torch.isfinite(classes).all()
    prob = torch.sigmoid(regions)
    assert prob[:, 0].min() > 0.999999 and prob[:, 1].max() < 1e-6
    torch.testing.assert_close(torch.softmax(classes, 1), torch.full_like(classes, 0.5))
    certain = Ensemble([Certain(1e4, -1e4)], exclusive=True)(x)
    assert torch.isfinite(certain).all() and torch.softmax(certain, 1)[:, 1].max() < 1e-30


def test_members_are_relative_so_the_folder_moves_whole(tmp_path):
    members = [member(tmp_path / "folds" / f"fold_{i}" / "best", REGIONS, seed=i) for i in range(2)]
    write_ensemble(str(tmp_path / "folds" / "ensemble"), members)
    refs = read_metadata(str(tmp_path / "folds" / "ensemble"))["model"]["config"]["members"]
    assert refs == ["../fold_0/best", "../fold_1/best"]
    shutil.move(tmp_path / "folds", tmp_path / "moved")
    x = torch.randn(1, 2, 32, 32)
    ensemble, _ = load_model(str(tmp_path / "moved" / "ensemble"))
    with torch.no_grad():
        torch.testing.assert_close(ensemble(x), Ensemble([load_model(str(tmp_path / "moved" / f"fold_{i}" / "best"))[0] for i in range(2)])(x))


def test_member_uris_resolve_on_s3_too():
    assert member_uri("s3://bucket/cv/ensemble", "../fold_1/last") == "s3://bucket/cv/fold_1/last"
    assert member_uri("s3://bucket/cv/ensemble", "s3://other/model") == "s3://other/model"
    assert member_uri("/data/cv/ensemble", "/models/m") == "/models/m"


def test_members_must_share_preprocessing_channels_and_classes(tmp_path):
    first = member(tmp_path / "a", REGIONS, seed=0)
    other_steps = member(tmp_path / "b", REGIONS.model_copy(update={"steps": [{"name": "scale"}]}), seed=1)
    other_classes = member(tmp_path / "c", EXCLUSIVE, seed=2)
    other_channels = member(tmp_path / "d", REGIONS, seed=3, in_channels=3)
    for bad, what in ((other_steps, "preprocess"), (other_classes, "classes"), (other_channels, "in_channels")):
        with pytest.raises(CheckpointError, match=what) as error:
            write_ensemble(str(tmp_path / "ensemble"), [first, bad])
        assert str(error.value).startswith(bad) and "\n" not in str(error.value)


def test_a_member_changed_since_the_ensemble_was_written_is_refused(tmp_path):
    members = [member(tmp_path / f"m{i}", REGIONS, seed=i) for i in range(2)]
    uri = write_ensemble(str(tmp_path / "ensemble"), members)
    member(tmp_path / "m1", REGIONS, seed=7, epoch=3)  # retrained in place
    with pytest.raises(CheckpointError, match=r"m1: changed since ensemble .* was written"):
        load_model(uri)
    shutil.rmtree(tmp_path / "m1")
    with pytest.raises(CheckpointError, match="m1: no model.json"):
        load_model(uri)


def test_copy_makes_a_self_contained_ensemble(tmp_path):
    members = [member(tmp_path / "runs" / f"m{i}", REGIONS, seed=i) for i in range(2)]
    source = write_ensemble(str(tmp_path / "runs" / "ensemble"), members, cross_validation={"folds": 2})
    out = copy_ensemble(source, str(tmp_path / "published"))
    shutil.rmtree(tmp_path / "runs")
    document = json.loads((tmp_path / "published" / "model.json").read_text())
    assert document["model"]["config"]["members"] == ["members/0", "members/1"]
    assert document["cross_validation"] == {"folds": 2} and document["postprocess"] == {"threshold": 0.4}
    assert isinstance(load_model(out)[0], Ensemble)


def test_compare_lists_an_ensemble_with_its_members_parameters(tmp_path):
    from raysegment.compare import compare
    from raysegment.models import count_parameters

    members = [member(tmp_path / f"m{i}", EXCLUSIVE, seed=i, metrics={"val_dice": 0.5}) for i in range(2)]
    uri = write_ensemble(str(tmp_path / "ensemble"), members)
    table = compare([uri, members[0]], str(tmp_path / "cmp")).table
    assert table.loc["ensemble", "model"] == "ensemble of 2"
    assert table.loc["ensemble", "params"] == 2 * count_parameters(load_model(members[0])[0]) == 2 * table.loc["m0", "params"]

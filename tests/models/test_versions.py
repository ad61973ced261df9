"""Model versions: content-addressed and immutable, aliases moved in one write, resolved to a version folder."""

from __future__ import annotations

import json

import pytest
import torch

from raysegment import storage
from raysegment.errors import ConfigError
from raysegment.models import ModelSpec, create_model, load_model, save_model, versions
from raysegment.models.ensemble import write_ensemble

SPEC = ModelSpec("unet", 3, 1, {"base_channels": 4, "depth": 2})


def _model(uri: str, seed: int, dice: float) -> str:
    torch.manual_seed(seed)
    save_model(uri, create_model(SPEC.name, in_channels=3, classes=1, **SPEC.config), SPEC, metrics={"val_dice": dice})
    return uri


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def repository(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "models" / "lgg")
    return f"{request.getfixturevalue('s3_bucket')}/models/lgg"


def test_publish_list_and_resolve(repository, tmp_path):
    first = versions.publish(_model(str(tmp_path / "a"), 0, 0.7), repository, ["production"])
    assert versions.resolve(repository).version == first.version
    second = versions.publish(_model(str(tmp_path / "b"), 1, 0.8), repository, ["staging"])
    assert second.version != first.version and second.uri == f"{repository}/versions/{second.version}"

    # Publishing the same model again is the same version: only the alias moves (a promotion).
    again = versions.publish(str(tmp_path / "b"), repository, ["production"])
    assert again.version == second.version and again.created == second.created
    alias = json.loads(storage.read_bytes(f"{repository}/aliases/production.json"))
    assert alias["version"] == second.version and alias["previous"] == first.version

    listed = versions.list_versions(repository)
    assert [(v.version, v.aliases) for v in listed] == [(first.version, ()), (second.version, ("production", "staging"))]
    assert listed[1].metrics == {"val_dice": 0.8} and listed[1].model == "unet" and listed[1].source == str(tmp_path / "b")

    resolved = versions.resolve(repository)
    assert (resolved.version, resolved.alias, resolved.uri) == (second.version, "production", second.uri)
    assert versions.resolve(f"{repository}@staging").version == second.version
    assert versions.resolve(first.uri).version == first.version and versions.resolve(first.uri).alias is None
    assert versions.resolve(str(tmp_path / "a")) is None  # a plain model folder is not a repository
    with pytest.raises(ConfigError, match="no alias 'canary'.*production, staging"):
        versions.resolve(f"{repository}@canary")
    model, _ = load_model(resolved.uri)
    expected, _ = load_model(str(tmp_path / "b"))
    for name, value in expected.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value)


def test_repository_without_the_default_alias_says_how_to_name_a_version(tmp_path):
    repository = str(tmp_path / "repo")
    versions.publish(_model(str(tmp_path / "a"), 0, 0.7), repository)
    with pytest.raises(ConfigError, match="no alias 'production'.*--alias production"):
        versions.resolve(repository)


def test_an_ensemble_is_published_with_its_members(tmp_path):
    members = [_model(str(tmp_path / f"fold{k}"), k, 0.5) for k in range(2)]
    ensemble = write_ensemble(str(tmp_path / "ensemble"), members)
    version = versions.publish(ensemble, str(tmp_path / "repo"), ["production"])
    for member in members:  # the version must not depend on the folders it came from
        storage.delete(storage.join(member, "model.pt"))
    model, document = load_model(version.uri)
    assert document["model"]["name"] == "ensemble" and len(model.members) == 2
    assert versions.publish(version.uri, str(tmp_path / "repo")).version == version.version

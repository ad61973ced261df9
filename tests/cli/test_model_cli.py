"""``raysegment model publish|list``: a version per content, aliases moved, one-line errors."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from raysegment.cli import app
from raysegment.models import ModelSpec, create_model, save_model


def test_publish_twice_then_list(tmp_path):
    spec = ModelSpec("unet", 3, 1, {"base_channels": 4, "depth": 2})
    model = str(tmp_path / "run" / "best")
    save_model(model, create_model("unet", in_channels=3, classes=1, **spec.config), spec, metrics={"val_dice": 0.75})
    repository = str(tmp_path / "models" / "lgg")
    runner = CliRunner()

    published = runner.invoke(app, ["model", "publish", model, repository, "--alias", "production", "--alias", "staging", "--json"])
    assert published.exit_code == 0, published.output
    version = json.loads(published.output)
    assert version["uri"] == f"{repository}/versions/{version['version']}"

    again = runner.invoke(app, ["model", "publish", str(tmp_path / "run"), repository, "--alias", "production"])
    assert again.exit_code == 0, again.output
    assert f"published {version['uri']} (production -> {version['version']})" in " ".join(again.output.split())

    listed = runner.invoke(app, ["model", "list", repository, "--json"])
    assert listed.exit_code == 0, listed.output
    [entry] = json.loads(listed.output)
    assert entry["aliases"] == ["production", "staging"] and entry["metrics"] == {"val_dice": 0.75}
    table = runner.invoke(app, ["model", "list", repository])
    assert version["version"] in table.output and "val_dice=0.75" in table.output

    missing = runner.invoke(app, ["model", "publish", str(tmp_path / "nothing"), repository])
    assert missing.exit_code == 2 and "nothing" in missing.output


def test_every_command_that_takes_a_model_takes_a_published_one(tmp_path):
    from raysegment.models.versions import publish
    from raysegment.train.export import resolve_model

    spec = ModelSpec("unet", 3, 1, {"base_channels": 4, "depth": 2})
    model = str(tmp_path / "best")
    save_model(model, create_model("unet", in_channels=3, classes=1, **spec.config), spec)
    repository = str(tmp_path / "models" / "lgg")
    version = publish(model, repository, ["production", "staging"])
    for name in (repository, f"{repository}@staging", version.uri):
        assert resolve_model(name) == version.uri  # evaluate, export, compare, infer and nightly all resolve through it
    exported = CliRunner().invoke(app, ["export", f"{repository}@production", "--out", str(tmp_path / "exported")])
    assert exported.exit_code == 0, exported.output
    assert (tmp_path / "exported" / "model.json").exists()

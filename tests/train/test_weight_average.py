"""``optim.ema``: checkpoints and the models a run exports hold the moving average of the weights,
and a resumed run goes on averaging where it stopped."""

from __future__ import annotations

import torch
from fixtures_data import JOBS_DIR, assert_resumed, tiny_job

from raysegment.models import load_model
from raysegment.train import apply_overrides, train
from raysegment.train.config import OptimSection
from raysegment.train.export import checkpoint_uri
from raysegment.train.loop import weight_average
from raysegment.train.optim import create_optimizer, create_schedule
from raysegment.train.state import Progress, load_state, save_state


def _fill(module: torch.nn.Module, value: float) -> None:
    with torch.no_grad():
        for tensor in module.parameters():
            tensor.fill_(value)


def test_the_average_follows_the_exponential_moving_average_formula():
    module = torch.nn.Linear(2, 1)
    average = weight_average(module, 0.9)
    for value in (1.0, 2.0, 4.0):
        _fill(module, value)
        average.update_parameters(module)
    # The first update takes the weights as they are; each later one moves 10% of the way.
    expected = 0.9 * (0.9 * 1.0 + 0.1 * 2.0) + 0.1 * 4.0
    torch.testing.assert_close(average.module.weight, torch.full((1, 2), expected))
    torch.testing.assert_close(average.module.bias, torch.full((1,), expected))
    assert int(average.n_averaged) == 3
    assert weight_average(module, None) is None


def test_checkpoint_holds_the_average_and_the_trained_weights(tmp_path):
    def build():
        return torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))

    torch.manual_seed(0)
    model, cfg = build(), OptimSection(epochs=3, ema=0.5)
    optimizer = create_optimizer(model.parameters(), cfg)
    schedule = create_schedule(optimizer, cfg, 1)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    average = weight_average(model, cfg.ema)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(4, 1, 8, 8)).square().mean().backward()
        optimizer.step()
        average.update_parameters(model)
    save_state(str(tmp_path), model, optimizer, schedule, scaler, Progress(epoch=1))

    state = torch.load(tmp_path / "state.pt", map_location="cpu", weights_only=True)
    assert "trained" not in state  # save_state was not given the average: a plain checkpoint
    save_state(str(tmp_path), model, optimizer, schedule, scaler, Progress(epoch=1), average)
    state = torch.load(tmp_path / "state.pt", map_location="cpu", weights_only=True)
    assert state["averaged_steps"] == 3
    for name, value in average.module.state_dict().items():
        torch.testing.assert_close(state["model"][name], value)  # what exports and inference load
    for name, value in model.state_dict().items():
        torch.testing.assert_close(state["trained"][name], value)
    assert not torch.equal(state["model"]["0.weight"], state["trained"]["0.weight"])
    assert not torch.equal(state["model"]["1.running_mean"], state["trained"]["1.running_mean"])  # BatchNorm statistics averaged too

    other = build()
    other_optimizer = create_optimizer(other.parameters(), cfg)
    other_average = weight_average(other, cfg.ema)
    load_state(str(tmp_path), other, other_optimizer, create_schedule(other_optimizer, cfg, 1), scaler, other_average)
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        torch.testing.assert_close(a, b)
    for a, b in zip(average.module.state_dict().values(), other_average.module.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert int(other_average.n_averaged) == 3


def test_a_run_exports_the_average_and_a_resumed_run_goes_on_averaging(ray_session, lgg_manifest, tmp_path):
    config = tiny_job(JOBS_DIR / "lgg_seed000_unet.yaml", lgg_manifest, tmp_path / "run", **{"optim.ema": 0.5, "checkpoint.select": "last"})
    first = train(config)
    resumed = train(apply_overrides(config, {"optim.epochs": 2}))
    assert_resumed(first.history, resumed.history, epochs=2)

    def state(epoch: int) -> dict:
        return torch.load(f"{checkpoint_uri(resumed.run_uri, epoch)}/state.pt", map_location="cpu", weights_only=True)

    one, two = state(1), state(2)
    assert one["averaged_steps"] > 0 and two["averaged_steps"] == 2 * one["averaged_steps"]  # not restarted at the resume
    assert any(not torch.equal(two["model"][k], two["trained"][k]) for k in two["model"] if two["model"][k].is_floating_point())
    model, _ = load_model(resumed.model_uri)  # last/: epoch 2
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, two["model"][name])

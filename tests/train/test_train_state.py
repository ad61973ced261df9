"""Checkpoint state: early-stopping counters and the save/load round trip."""

from __future__ import annotations

import torch

from raysegment.train.config import OptimSection
from raysegment.train.optim import create_optimizer, create_schedule
from raysegment.train.state import (
    Progress,
    load_state,
    read_history,
    save_state,
)


def test_progress_tracks_best_and_stops_after_patience():
    progress = Progress()
    for epoch, dice in enumerate([0.2, 0.5, 0.49, 0.5, 0.3], start=1):
        progress.update({"epoch": epoch, "val_patient_dice": dice, "val_dice": 1 - dice}, "val_patient_dice", patience=3, min_delta=0.0)
    assert (progress.best_epoch, progress.best_dice, progress.bad_epochs, progress.stopped) == (2, 0.5, 3, True)
    assert [h["epoch"] for h in progress.history] == [1, 2, 3, 4, 5]


def test_progress_follows_the_monitored_score():
    progress = Progress()
    for epoch, (patient, pooled) in enumerate([(0.2, 0.9), (0.6, 0.5), (0.4, 0.95)], start=1):
        progress.update({"epoch": epoch, "val_patient_dice": patient, "val_dice": pooled}, "val_patient_dice", None, 0.0)
    assert (progress.best_epoch, progress.best_dice) == (2, 0.6)


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    cfg = OptimSection(scheduler="cosine", epochs=5)
    optimizer = create_optimizer(model.parameters(), cfg)
    schedule = create_schedule(optimizer, cfg, 1)
    model(torch.randn(2, 1, 8, 8)).sum().backward()
    optimizer.step()
    schedule.step_epoch(0.1)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    progress = Progress()
    progress.update({"epoch": 1, "val_dice": 0.4}, "val_dice", patience=None, min_delta=0.0)
    save_state(str(tmp_path), model, optimizer, schedule, scaler, progress)

    other = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    other_optimizer = create_optimizer(other.parameters(), cfg)
    other_schedule = create_schedule(other_optimizer, cfg, 1)
    restored = load_state(str(tmp_path), other, other_optimizer, other_schedule, scaler)
    assert restored == progress
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert other_optimizer.state_dict()["state"][0]["step"] == 1
    assert other_schedule.scheduler.last_epoch == 1
    assert read_history(str(tmp_path)) == [{"epoch": 1, "val_dice": 0.4}]
    saved = torch.load(tmp_path / "state.pt", map_location="cpu", weights_only=True)["model"]
    assert set(saved) == set(model.state_dict())

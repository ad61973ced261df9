"""Optimizers and schedules by name, and their state round trip."""

from __future__ import annotations

import pytest
import torch

from raysegment.registry import UnknownNameError
from raysegment.train.config import OptimSection
from raysegment.train.optim import OPTIMIZERS, create_optimizer, create_schedule


def _model():
    return torch.nn.Conv2d(1, 1, 3)


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_optimizers(name):
    optimizer = create_optimizer(_model().parameters(), OptimSection(optimizer=name, lr=0.1, weight_decay=0.01))
    assert optimizer.param_groups[0]["lr"] == 0.1 and optimizer.param_groups[0]["weight_decay"] == 0.01
    assert type(optimizer).__name__.lower() == name


def test_unknown_optimizer_lists_valid_names():
    with pytest.raises(UnknownNameError, match="adam, adamw, sgd"):
        OPTIMIZERS.get("rmsprop")


def test_cosine_anneals_per_epoch():
    cfg = OptimSection(scheduler="cosine", lr=1.0, epochs=4)
    optimizer = create_optimizer(_model().parameters(), cfg)
    schedule = create_schedule(optimizer, cfg, steps_per_epoch=3)
    schedule.step_batch()  # no effect: cosine steps per epoch
    assert optimizer.param_groups[0]["lr"] == 1.0
    for _ in range(4):
        optimizer.step()
        schedule.step_epoch(0.5)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01)


def test_plateau_halves_after_no_improvement():
    cfg = OptimSection(scheduler="plateau", lr=1.0, patience=3)
    optimizer = create_optimizer(_model().parameters(), cfg)
    schedule = create_schedule(optimizer, cfg, steps_per_epoch=1)
    for dice in (0.5, 0.5, 0.5):
        optimizer.step()
        schedule.step_epoch(dice)
    assert optimizer.param_groups[0]["lr"] == 0.5


def test_onecycle_steps_per_batch_and_never_past_its_plan():
    cfg = OptimSection(scheduler="onecycle", lr=1.0, epochs=2)
    optimizer = create_optimizer(_model().parameters(), cfg)
    schedule = create_schedule(optimizer, cfg, steps_per_epoch=3)
    lrs = []
    for _ in range(10):  # more batches than planned (6) must not raise
        optimizer.step()
        schedule.step_batch()
        lrs.append(optimizer.param_groups[0]["lr"])
    assert max(lrs) == pytest.approx(1.0, rel=0.05) and lrs[-1] < 0.01
    restored = create_schedule(create_optimizer(_model().parameters(), cfg), cfg, steps_per_epoch=3)
    restored.load_state_dict(schedule.state_dict())
    assert restored.scheduler.last_epoch == schedule.scheduler.last_epoch

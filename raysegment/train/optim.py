"""Optimizers and learning-rate schedules by name, as registries.

A schedule says when it steps: ``per_batch`` (one-cycle) or per epoch; ``plateau`` is the one that
needs the validation Dice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from raysegment.registry import Registry
from raysegment.train.config import OptimSection

OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer")
SCHEDULERS: Registry[Callable[..., Schedule]] = Registry("scheduler")


@OPTIMIZERS.register("adam")
def _adam(params, cfg: OptimSection):
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("adamw")
def _adamw(params, cfg: OptimSection):
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("sgd")
def _sgd(params, cfg: OptimSection):
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0)


@dataclass
class Schedule:
    """A torch LR scheduler (or none) and when to step it."""

    scheduler: object | None
    per_batch: bool = False
    needs_metric: bool = False

    def step_batch(self) -> None:
        # One-cycle refuses to step past its planned total; a last uneven batch must not crash a run.
        if self.scheduler is not None and self.per_batch and self.scheduler.last_epoch + 1 < self.scheduler.total_steps:
            self.scheduler.step()

    def step_epoch(self, val_dice: float) -> None:
        if self.scheduler is None or self.per_batch:
            return
        if self.needs_metric:
            self.scheduler.step(val_dice)
        else:
            self.scheduler.step()

    def state_dict(self) -> dict | None:
        return None if self.scheduler is None else self.scheduler.state_dict()

    def load_state_dict(self, state: dict | None) -> None:
        if self.scheduler is not None and state is not None:
            self.scheduler.load_state_dict(state)


@SCHEDULERS.register("none")
def _none(optimizer, cfg: OptimSection, steps_per_epoch: int) -> Schedule:
    return Schedule(None)


@SCHEDULERS.register("cosine")
def _cosine(optimizer, cfg: OptimSection, steps_per_epoch: int) -> Schedule:
    return Schedule(torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs, eta_min=cfg.lr * 0.01))


@SCHEDULERS.register("poly")
def _poly(optimizer, cfg: OptimSection, steps_per_epoch: int) -> Schedule:
    """nnU-Net's schedule: ``lr * (1 - epoch / epochs) ** 0.9``."""
    return Schedule(torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=cfg.epochs, power=0.9))


@SCHEDULERS.register("plateau")
def _plateau(optimizer, cfg: OptimSection, steps_per_epoch: int) -> Schedule:
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=max(1, (cfg.patience or 6) // 3))
    return Schedule(scheduler, needs_metric=True)


@SCHEDULERS.register("onecycle")
def _onecycle(optimizer, cfg: OptimSection, steps_per_epoch: int) -> Schedule:
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, epochs=cfg.epochs, steps_per_epoch=max(1, steps_per_epoch))
    return Schedule(scheduler, per_batch=True)


def create_optimizer(params, cfg: OptimSection) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(cfg.optimizer)(params, cfg)


def create_schedule(optimizer, cfg: OptimSection, steps_per_epoch: int) -> Schedule:
    """``steps_per_epoch``: optimizer steps per epoch on each worker (one-cycle needs the total)."""
    return SCHEDULERS.get(cfg.scheduler)(optimizer, cfg, steps_per_epoch)

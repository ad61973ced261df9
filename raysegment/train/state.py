"""What a training checkpoint holds, and how it is written and read back.

A Ray Train checkpoint of raysegment is a directory with

* ``state.pt``: model weights (wrapper prefixes removed), optimizer, scheduler and grad-scaler
  state, and the :class:`Progress` counters. With a weight average (``optim.ema``), ``model`` holds
  the average (what the checkpoint stands for: exports, evaluation and inference load it) and
  ``trained`` the weights as trained, with ``averaged_steps``, to resume both;
* ``history.json``: one metrics dict per finished epoch, so a restarted or resumed run continues
  the same history and the driver can write ``history.parquet`` from the last checkpoint alone.

Random state needs no saving: every epoch re-seeds torch, numpy and augmentation from
``(seed, epoch, rank)``, so the epoch number in the checkpoint fixes it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

import torch

from raysegment.models.encoder_weights import strip_wrapper_prefixes

STATE_FILE = "state.pt"
HISTORY_FILE = "history.json"


@dataclass
class Progress:
    """Counters that decide where a run goes on from.

    Attributes:
        epoch: last finished epoch (0 before the first).
        best_dice: best monitored validation score so far (-1 before any).
        best_epoch: the epoch that reached it.
        bad_epochs: epochs since the last improvement (early stopping).
        stopped: early stopping fired; a resumed run does not train further.
        history: one metrics dict per finished epoch.
    """

    epoch: int = 0
    best_dice: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped: bool = False
    history: list[dict] = field(default_factory=list)

    def update(self, metrics: dict, monitor: str, patience: int | None, min_delta: float) -> bool:
        """Record a finished epoch; returns whether its ``monitor`` score is the best so far."""
        self.epoch = int(metrics["epoch"])
        self.history.append(metrics)
        improved = metrics[monitor] > self.best_dice + min_delta
        if improved:
            self.best_dice, self.best_epoch, self.bad_epochs = float(metrics[monitor]), self.epoch, 0
        else:
            self.bad_epochs += 1
        self.stopped = patience is not None and self.bad_epochs >= patience
        return improved


def save_state(directory: str, model, optimizer, schedule, scaler, progress: Progress, average=None) -> None:
    """Write ``state.pt`` and ``history.json`` into a local directory.

    ``average``: the run's :class:`torch.optim.swa_utils.AveragedModel` (``optim.ema``), or None.
    """
    counters = {k: v for k, v in asdict(progress).items() if k != "history"}
    state = {
        "model": _weights(model if average is None else average.module),
        "optimizer": optimizer.state_dict(),
        "scheduler": schedule.state_dict(),
        "scaler": scaler.state_dict(),
        "progress": counters,
    }
    if average is not None:
        state.update(trained=_weights(model), averaged_steps=int(average.n_averaged))
    torch.save(state, os.path.join(directory, STATE_FILE))
    with open(os.path.join(directory, HISTORY_FILE), "w") as f:
        json.dump(progress.history, f)


def read_history(directory: str) -> list[dict]:
    with open(os.path.join(directory, HISTORY_FILE)) as f:
        return json.load(f)


def load_state(directory: str, model, optimizer, schedule, scaler, average=None) -> Progress:
    """Restore everything :func:`save_state` wrote; ``model`` may be DDP-wrapped.

    A checkpoint written without a weight average starts ``average`` from its weights.
    """
    state = torch.load(os.path.join(directory, STATE_FILE), map_location="cpu", weights_only=True)
    getattr(model, "module", model).load_state_dict(state.get("trained", state["model"]))
    if average is not None:
        average.module.load_state_dict(state["model"])
        average.n_averaged.fill_(state.get("averaged_steps", 0))
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    return Progress(**state["progress"], history=read_history(directory))


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in strip_wrapper_prefixes(model.state_dict()).items()}

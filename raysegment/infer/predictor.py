"""The model stage: a pool of actors that each load the checkpoint once and segment unit rows.

Follows Ray's ``torch_image_batch_trained`` example: ``__init__`` loads the model, ``__call__``
takes a batch ``dict[str, np.ndarray]`` and runs under ``torch.inference_mode``. A batch holds
whole units (a case, or a patient's slices); their slices are run ``batch_size`` at a time, so the
forward-pass size is the same for 2D slice cases and for volumes.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from raysegment.infer.plan import Plan
from raysegment.infer.watchdog import case_deadline, cases_in, deadline
from raysegment.predict import forward_probabilities


class Predictor:
    """Callable class for ``Dataset.map_batches(Predictor, concurrency=workers, num_gpus=...)``.

    Args:
        plan: the run's plan (checkpoint URI, batch size).
    """

    def __init__(self, plan: Plan):
        import torch

        from raysegment.models import load_model, precision

        self.plan = plan
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cpu":
            # Ray sets OMP_NUM_THREADS from whole reserved CPUs only; a fractional share would run 1.
            torch.set_num_threads(plan.threads)
        self.model, _ = load_model(plan.model_uri, map_location=self.device)
        self.autocast = precision.autocast(plan.amp, self.device)
        # Tensor-core convolutions want NHWC; 3D models keep their NCDHW layout.
        self.channels_last = self.device.type == "cuda" and plan.preprocess_config.dims == 2
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.batch_size = plan.batch_size
        self.classes = len(plan.class_names)
        self.exclusive = plan.preprocess_config.exclusive
        self.mirror = plan.postprocess_config.mirror
        self.patch_size = plan.preprocess_config.patch_size  # 3D models: the sliding window

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        """Add ``prob`` ``(S, K, h, w)`` float32 label probabilities and ``predict_seconds`` per unit.

        Rows that are not ``ok`` pass through with an empty ``prob``; a unit whose forward pass
        fails becomes ``failed`` at stage ``predict`` without taking the other units down. A batch
        that outlasts its cases' deadline ends the actor (:mod:`.watchdog`).
        """
        cases = sum(cases_in({"meta": meta}) for meta in batch["meta"])
        with deadline(case_deadline(self.plan, cases)):
            return self._predict(batch)

    def _predict(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        n = len(batch["unit"])
        status, stage, error = list(batch["status"]), list(batch["stage"]), list(batch["error"])
        probs = [np.zeros((0, self.classes, *[1] * (batch["image"][i].ndim - 2)), np.float32) for i in range(n)]
        seconds = np.zeros(n, np.float64)
        pending = [i for i in range(n) if status[i] == "ok"]
        by_shape: dict[tuple, list[int]] = {}
        for i in pending:
            by_shape.setdefault(tuple(batch["image"][i].shape[1:]), []).append(i)
        for group in by_shape.values():
            try:
                self._run_group(group, batch["image"], probs, seconds)
            except Exception:  # noqa: BLE001 - retried unit by unit below
                for i in group:  # find the unit(s) that broke the shared pass; the rest still succeed
                    try:
                        self._run_group([i], batch["image"], probs, seconds)
                    except Exception as exc:  # noqa: BLE001 - recorded as this unit's error
                        status[i], stage[i] = "failed", "predict"
                        error[i] = f"{batch['unit'][i]}: model failed on its slices ({type(exc).__name__}: {' '.join(str(exc).split())[:300]})"
        out = {k: v for k, v in batch.items() if k != "image"}
        out.update(status=np.array(status), stage=np.array(stage), error=np.array(error),
                   prob=ragged(probs), predict_seconds=seconds)
        return out

    def _run_group(self, rows: list[int], images, probs: list[np.ndarray], seconds: np.ndarray) -> None:
        """One concatenated stream of the slices of ``rows``, cut into forward passes of ``batch_size``."""

        stack = np.concatenate([images[i] for i in rows]) if len(rows) > 1 else images[rows[0]]
        start = time.perf_counter()
        prob = forward_probabilities(self.model, stack, self.batch_size, self.exclusive, self.mirror, self.autocast,
                                     self.channels_last, self.patch_size)
        elapsed = time.perf_counter() - start
        offset = 0
        for i in rows:
            count = len(images[i])
            probs[i] = prob[offset : offset + count]
            seconds[i] = elapsed * count / len(stack)  # each unit's share of the shared passes
            offset += count


def ragged(values: list[Any]) -> np.ndarray:
    """A column of ``values`` as they are, e.g. differently shaped arrays (Ray Data stores those as a variable-shaped tensor)."""
    column = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):  # slice assignment would broadcast equally shaped arrays
        column[i] = value
    return column

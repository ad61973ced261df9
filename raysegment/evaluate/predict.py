"""Predict one manifest case with a trained model and score it at the original resolution.

The case is read once without any preprocessing steps (so its mask is the ground truth at the
scan's own resolution); each slice then goes through the checkpoint's own steps
(:func:`raysegment.preprocess.apply_steps`), the forward pass ``infer`` runs
(:func:`raysegment.predict.forward_probabilities`), back to the scan's grid and through the
checkpoint's post-processing exactly as ``infer`` does (:mod:`raysegment.infer.postprocess`).
Volumes are stacked again along the last axis and put back in the file's voxel order before
scoring in 3D with the scan's spacing. A 3D model sees the volume whole
(:func:`raysegment.preprocess.read_volume`: resampled to its spacing, predicted through sliding
windows) and its probabilities go back to the scan's grid the same way ``infer`` maps them.

Beside the metrics, a case gets the loss the model was trained with (``loss`` in its
``model.json``), as validation computes it: on the model's logits against the truth at the
model's input resolution, all slices of a case in one batch (mirroring and post-processing
judge masks, not logits, and play no part in it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from raysegment.infer.postprocess import postprocess_unit, to_input_grid
from raysegment.losses import create_loss, loss_mode
from raysegment.metrics import case_metrics
from raysegment.models.checkpoint import load_model
from raysegment.postprocess import PostprocessConfig
from raysegment.predict import forward_probabilities, window_logits
from raysegment.preprocess import (
    PreprocessConfig,
    apply_steps,
    iter_examples,
    normalise_slices,
    read_volume,
    restore_orientation,
)


@dataclass
class CasePrediction:
    """One case at its original resolution.

    Shape:
        image ``(C, *spatial)`` (raw intensities), truth and prediction ``(K, *spatial)`` bool;
        ``spatial`` is ``(H, W)`` for a slice case, ``(I, J, S)`` for a volume case.

    Attributes:
        loss: the model's training loss on the case (None: its checkpoint records no loss); a
            patient volume stacked from slice cases has the mean of theirs.
    """

    case_id: str
    image: np.ndarray
    truth: np.ndarray
    prediction: np.ndarray
    spacing: tuple[float, ...]
    loss: float | None = None


class CaseScorer:
    """Loads a checkpoint once and scores manifest rows (a Ray Data ``flat_map`` callable class).

    Args:
        model_uri: a checkpoint directory (``model.json`` + ``model.pt``).
        postprocess: overrides of the checkpoint's post-processing (``threshold``, ``largest_component``).
        batch_size: slices per forward pass.
    """

    def __init__(self, model_uri: str, postprocess: dict | None = None, batch_size: int = 16):
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model, meta = load_model(model_uri, map_location=device)
        self.device = torch.device(device)
        self.preprocess = PreprocessConfig.model_validate(meta["preprocess"]).for_outputs(int(meta["model"].get("classes", 1)))
        self.postprocess = PostprocessConfig.model_validate({**meta.get("postprocess", {}), **(postprocess or {})})
        self.class_names = list(meta.get("class_names") or self.preprocess.class_names)
        self.batch_size = batch_size
        self.loss_fn = None
        if meta.get("loss") is not None:
            mode = loss_mode(len(self.preprocess.class_names), self.preprocess.exclusive)
            self.loss_fn = create_loss(meta["loss"], mode=mode).to(self.device)

    def case_loss(self, images: np.ndarray, masks: np.ndarray) -> float | None:
        """The training loss of the model's logits for a case's preprocessed inputs against its truth at that resolution.

        Shape:
            images ``(S, C, h, w)`` and masks ``(S, K, h, w)``, a case's slices; a 3D model's
            volume ``(1, C, d, h, w)`` and ``(1, K, d, h, w)``.
        """
        if self.loss_fn is None:
            return None
        with torch.inference_mode():
            inputs = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).to(self.device)
            if self.preprocess.dims == 3:
                logits = window_logits(self.model, inputs, self.preprocess.patch_size, self.batch_size)
            else:
                logits = torch.cat([self.model(inputs[i : i + self.batch_size]).float() for i in range(0, len(inputs), self.batch_size)])
            return float(self.loss_fn(logits, torch.from_numpy(np.ascontiguousarray(masks, dtype=np.float32)).to(self.device)))

    def read(self, row: dict) -> list[dict]:
        """The raw slices of ``row`` (``iter_examples`` without steps), every one of them."""
        raw = self.preprocess.model_copy(update={"steps": [], "slice_selection": "all"})
        return list(iter_examples(row, raw, with_mask=True))

    def predict(self, row: dict, postprocess: bool = True, examples: list[dict] | None = None,
                normalised: list[np.ndarray] | None = None) -> CasePrediction:
        """Run the model on every slice of ``row`` and map the prediction back to the scan's grid.

        Args:
            postprocess: apply the whole post-processing to this case; False only thresholds (a
                slice that :class:`VolumeScorer` post-processes with the rest of its volume).
            examples, normalised: the case's raw slices (:meth:`read`) and the same after the
                volume-scope steps over their whole volume; default read here, the case its own volume.
        """
        from raysegment.readers import read_mask

        if self.preprocess.dims == 3:
            return self._predict_volume(row, postprocess)
        if examples is None:
            examples = self.read(row)
        if normalised is None:
            normalised = normalise_slices([ex["image"] for ex in examples], self.preprocess)
        prepared = [apply_steps(image, ex["mask"], self.preprocess, volume_normalised=True) for image, ex in zip(normalised, examples)]
        loss = self.case_loss(np.stack([image for image, _, _ in prepared]), np.stack([mask for _, mask, _ in prepared]))
        # The forward pass and the way back to the scan's grid are infer's own, so the figures here
        # are those of the masks infer writes.
        prob = forward_probabilities(self.model, np.stack([image for image, _, _ in prepared]), self.batch_size,
                                     self.preprocess.exclusive, self.postprocess.mirror)
        volume = not (len(examples) == 1 and row.get("level") == "slice")
        orientation = examples[0]["geometry"]["orientation"]
        grid = to_input_grid(prob, prepared[0][2], orientation, volume=volume)
        prediction = (postprocess_unit([grid], self.postprocess, self.preprocess.exclusive)[0] if postprocess
                      else self.postprocess.binarize(grid, self.preprocess.exclusive))
        spacing = read_mask(row["mask_uri"]).spacing
        if not volume:
            ex = examples[0]
            return CasePrediction(row["case_id"], ex["image"], ex["mask"] > 0.5, prediction > 0, tuple(spacing[:2]), loss)
        def stack(arrays):  # slices back into a volume, in the file's voxel order
            return restore_orientation(np.stack(arrays, axis=-1), orientation)

        return CasePrediction(row["case_id"], stack([ex["image"] for ex in examples]),
                              stack([ex["mask"] for ex in examples]) > 0.5, prediction > 0, tuple(spacing), loss)

    def _predict_volume(self, row: dict, postprocess: bool = True) -> CasePrediction:
        """A 3D model's prediction of a volume case: sliding windows on the resampled volume, back on the scan's grid."""
        volume = read_volume(row, self.preprocess, with_mask=True)
        prob = forward_probabilities(self.model, volume["image"][None], self.batch_size, self.preprocess.exclusive,
                                     self.postprocess.mirror, patch_size=self.preprocess.patch_size)
        orientation = volume["geometry"]["orientation"]
        grid = to_input_grid(prob, volume["geometry"]["steps"], orientation, volume=True)
        prediction = (postprocess_unit([grid], self.postprocess, self.preprocess.exclusive)[0] if postprocess
                      else self.postprocess.binarize(grid, self.preprocess.exclusive))
        return CasePrediction(row["case_id"], restore_orientation(volume["raw"], orientation),
                              restore_orientation(volume["truth"], orientation) > 0.5, prediction > 0,
                              tuple(volume["file_spacing"]), self.case_loss(volume["image"][None], volume["mask"][None]))

    def score(self, row: dict) -> list[dict]:
        """Per-class metric rows of one case (``case_id``, ``split``, ``class`` and the case metrics)."""
        case = self.predict(row)
        rows = case_metrics(case.prediction, case.truth, case.spacing, self.class_names)
        return [{"case_id": case.case_id, "split": row.get("split"), "dimensions": len(case.spacing), **_loss(case), **r} for r in rows]

    def __call__(self, row: dict) -> list[dict]:
        return self.score(row)


class VolumeScorer(CaseScorer):
    """Scores the slice cases of one patient volume together (a Ray Data ``flat_map`` callable class).

    Slice datasets (LGG: one TIFF per slice) are judged per patient: the slices are stacked in
    order, post-processed as one volume (the 3D largest component), and scored in 3D; each slice
    is also scored on its own, from the same post-processed stack, as the seed reports do. The slice
    files carry no slice distance, so the stacking axis counts one unit per slice in HD95 and ASSD.
    """

    def predict_slices(self, rows: list[dict]) -> tuple[list[dict], list[CasePrediction]]:
        """The volume's rows in slice order and each slice's thresholded prediction, before the volume's post-processing."""
        rows = sorted(rows, key=lambda r: r["slice_index"])
        examples = [self.read(row) for row in rows]
        # The volume-scope steps see the patient's slices together, as training saw them.
        normalised = iter(normalise_slices([ex["image"] for case in examples for ex in case], self.preprocess))
        return rows, [self.predict(row, postprocess=False, examples=case, normalised=[next(normalised) for _ in case])
                      for row, case in zip(rows, examples)]

    def stack(self, rows: list[dict], cases: list[CasePrediction]) -> CasePrediction:
        """The slices of :meth:`predict_slices` as one volume ``(K, H, W, S)``, post-processed whole."""
        def stacked(arrays):
            return np.stack(arrays, axis=-1)

        losses = [c.loss for c in cases if c.loss is not None]
        return CasePrediction(rows[0]["volume_id"], stacked([c.image for c in cases]), stacked([c.truth for c in cases]),
                              self.postprocess.clean(stacked([c.prediction for c in cases]).astype(np.uint8)) > 0,
                              (*cases[0].spacing, 1.0), float(np.mean(losses)) if losses else None)

    def predict_volume(self, rows: list[dict]) -> tuple[list[dict], CasePrediction]:
        """The volume's rows in slice order and its stacked, post-processed prediction ``(K, H, W, S)``."""
        rows, cases = self.predict_slices(rows)
        return rows, self.stack(rows, cases)

    def score_volume(self, rows: list[dict]) -> list[dict]:
        """Per-class rows of each slice (``level`` ``case``) and of the stacked volume (``level`` ``volume``)."""
        rows, cases = self.predict_slices(rows)
        volume = self.stack(rows, cases)
        out = []
        for k, row in enumerate(rows):
            for r in case_metrics(volume.prediction[..., k], volume.truth[..., k], volume.spacing[:2], self.class_names):
                out.append({"level": "case", "case_id": row["case_id"], "volume_id": row["volume_id"], "split": row.get("split"),
                            "dimensions": 2, **_loss(cases[k]), **r})
        for r in case_metrics(volume.prediction, volume.truth, volume.spacing, self.class_names):
            out.append({"level": "volume", "case_id": volume.case_id, "volume_id": volume.case_id,
                        "split": rows[0].get("split"), "dimensions": 3, "slices": len(rows), **_loss(volume), **r})
        return out

    def __call__(self, volume: dict) -> list[dict]:
        """``{"rows": the volume's slice rows}`` -> its case and volume metric rows."""
        return self.score_volume(volume["rows"])


def _loss(case: CasePrediction) -> dict[str, float]:
    """The ``loss`` entry of a case's metric rows; none when its checkpoint records no loss."""
    return {} if case.loss is None else {"loss": case.loss}

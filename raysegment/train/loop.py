"""The Ray Train worker function: one epoch loop per worker, DDP across workers.

Follows Ray's ``train_func_per_worker(config)`` examples: unpack the config at the top,
``prepare_model`` (DDP; gloo on CPU, NCCL on GPU), read the worker's shard with
``iter_torch_batches``, ``ray.train.report`` metrics every epoch with a checkpoint that rank 0
saves into a temporary directory, and resume from ``ray.train.get_checkpoint()``.
"""

from __future__ import annotations

import random
import tempfile
import time

import numpy as np
import torch
import torch.distributed as dist

from raysegment.losses import DeepSupervisionLoss, create_loss, loss_mode, loss_with_terms, term_names
from raysegment.metrics import confusion_counts, scores_from_counts
from raysegment.models import precision
from raysegment.models.checkpoint import ModelSpec
from raysegment.models.precision import autocast_dtype
from raysegment.postprocess import PostprocessConfig, label_probabilities
from raysegment.predict import batch_probabilities
from raysegment.train.config import TrainConfig
from raysegment.train.optim import create_optimizer, create_schedule
from raysegment.train.progress import BatchReporter
from raysegment.train.state import Progress, load_state, save_state
from raysegment.train.tracking import TensorBoardLogger

#: Scores of the pooled confusion counts reported each epoch for train and val. F1 is not among
#: them because on masks it is Dice: 2PR / (P + R) = 2TP / (2TP + FP + FN), the same counts.
REPORTED_SCORES = ("dice", "iou", "precision", "recall", "accuracy", "specificity")


def seed_everything(seed: int, epoch: int, rank: int) -> None:
    """Seed torch, numpy and random from ``(seed, epoch, rank)``: the epoch fixes the random state."""
    state = np.random.SeedSequence([seed, epoch, rank]).generate_state(2)
    torch.manual_seed(int(state[0]))
    np.random.seed(int(state[1]))
    random.seed(int(state[1]))


class LossMeter:
    """The example-weighted sums of a loss and of its terms (``loss_bce``, ...), summed over batches and workers.

    Args:
        terms: the names of the loss's terms (:func:`raysegment.losses.term_names`), fixed before
            the first batch so every worker all-reduces the same tensor, batches or not.
    """

    def __init__(self, terms: list[str], device: torch.device):
        self.terms = terms
        self.sums = torch.zeros(len(terms) + 2, dtype=torch.float64, device=device)  # (loss, *terms, examples)

    def add(self, loss: torch.Tensor, terms: dict[str, torch.Tensor], n: int) -> None:
        values = [loss, *(terms[name] for name in self.terms)]
        self.sums += torch.cat([torch.stack([v.detach().double() for v in values]) * n, self.sums.new_tensor([float(n)])])

    @property
    def examples(self) -> float:
        return float(self.sums[-1])

    def summary(self, prefix: str) -> dict[str, float]:
        """``<prefix>_loss`` and ``<prefix>_loss_<term>``: means per example; all-reduce across workers first."""
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.sums)
        means = (self.sums[:-1] / self.sums[-1].clamp(min=1)).tolist()
        return {f"{prefix}_loss": means[0], **{f"{prefix}_loss_{name}": value for name, value in zip(self.terms, means[1:])}}


class EpochStats:
    """Loss (and its terms), example count and per-class confusion counts, summed over batches and workers."""

    def __init__(self, classes: int, device: torch.device, exclusive: bool = False, terms: list[str] | None = None):
        self.loss = LossMeter(terms or [], device)
        self.counts = torch.zeros(4, classes, dtype=torch.float64, device=device)
        self.exclusive = exclusive
        self.rule = PostprocessConfig()  # threshold 0.5 on the labels: training scores are not post-processed

    def add(self, loss: torch.Tensor, terms: dict[str, torch.Tensor], logits: torch.Tensor, masks: torch.Tensor) -> None:
        self.loss.add(loss, terms, masks.shape[0])
        counts = confusion_counts(self.rule.masks_from_logits(logits.detach(), self.exclusive), masks > 0.5)
        self.counts += torch.stack([c.sum(0).double() for c in counts])

    def summary(self, prefix: str) -> tuple[dict[str, float], dict]:
        """All-reduce across workers, then the loss and the class-mean scores of the pooled counts."""
        out = self.loss.summary(prefix)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.counts)
        scores = scores_from_counts(*self.counts.cpu())
        out.update({f"{prefix}_{name}": float(scores[name].mean()) for name in REPORTED_SCORES})
        return out, scores


def _batches(shard, batch_size: int, device, seed: int | None = None, drop_last: bool = False):
    kwargs = {"local_shuffle_buffer_size": 4 * batch_size, "local_shuffle_seed": seed} if seed is not None else {}
    return shard.iter_torch_batches(batch_size=batch_size, dtypes=torch.float32, device=device, drop_last=drop_last, **kwargs)


def train_func_per_worker(config: dict) -> None:
    """Ray Train entry point.

    Args:
        config: ``job`` (a TrainConfig dump), ``spec`` (ModelSpec dict), ``steps_per_epoch``,
            ``drop_last`` (each worker has at least one full batch), ``run_uri``, ``class_names``,
            ``val_volumes`` (patient volumes in the validation set).
    """
    import ray.train
    import ray.train.torch

    job = TrainConfig.model_validate(config["job"])
    spec = ModelSpec.from_dict(config["spec"])
    class_names = config["class_names"]
    exclusive = job.data.preprocess.exclusive
    opt = job.optim
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    channels_last = device.type == "cuda" and job.data.preprocess.dims == 2  # NHWC for tensor cores; 3D stays NCDHW

    checkpoint = ray.train.get_checkpoint()
    seed_everything(opt.seed, 0, 0)  # identical initial weights on every worker
    model = spec.build(pretrained=checkpoint is None)  # a restored run loads its own weights, downloads nothing
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = ray.train.torch.prepare_model(model)
    loss_fn = DeepSupervisionLoss(create_loss(opt.loss, mode=loss_mode(len(class_names), exclusive)))
    optimizer = create_optimizer([p for p in model.parameters() if p.requires_grad], opt)
    schedule = create_schedule(optimizer, opt, config["steps_per_epoch"])
    # fp16 needs loss scaling against gradient underflow; bf16 has float32's range and does not.
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype(opt.amp, device) is torch.float16)

    average = weight_average(getattr(model, "module", model), opt.ema)
    progress = Progress()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            progress = load_state(directory, model, optimizer, schedule, scaler, average)

    logger = TensorBoardLogger(config["run_uri"]) if rank == 0 and job.tracking.tensorboard else None
    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val")
    autocast = precision.autocast(opt.amp, device)
    postprocess = job.postprocess
    batch_progress = BatchReporter(config["steps_per_epoch"] if job.data.cache else None)  # a streamed dataset has no count

    while progress.epoch < opt.epochs and not progress.stopped:
        epoch = progress.epoch + 1
        seed_everything(opt.seed, epoch, rank)
        started = time.perf_counter()
        model.train()
        train = EpochStats(len(class_names), device, exclusive, term_names(loss_fn))
        # Batches come preprocessed and augmented from Ray Data tasks (raysegment.train.augment,
        # raysegment.train.patches); the time spent waiting for the next one is the share of a
        # step the model waits for data.
        waited, mark = 0.0, time.perf_counter()
        # A last batch of one example breaks BatchNorm on 1x1 feature maps (small encoders): dropped.
        for batch in _batches(train_shard, opt.batch_size, "cpu", seed=opt.seed + epoch, drop_last=config["drop_last"]):
            waited += time.perf_counter() - mark
            images = batch["image"].to(device, non_blocking=True)
            masks = batch["mask"].to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast():
                outputs = model(images)
                loss, terms = loss_fn.forward_with_terms(outputs, masks)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if opt.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), opt.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            schedule.step_batch()
            if average is not None:
                average.update_parameters(getattr(model, "module", model))
            last = outputs[-1] if isinstance(outputs, (list, tuple)) else outputs
            train.add(loss, terms, last.float(), masks)
            batch_progress.step(epoch, len(masks))
            mark = time.perf_counter()
        train_time = time.perf_counter() - started
        train_metrics, _ = train.summary("train")
        judged = getattr(model, "module", model) if average is None else average.module  # the weights the checkpoint will hold
        if job.data.preprocess.dims == 3:
            val_metrics = validate_volumes(judged, loss_fn, val_shard, job.data.preprocess.patch_size,
                                           opt.batch_size, device, exclusive, autocast, rank, world, config["val_volumes"],
                                           postprocess, class_names)
        else:
            val_metrics = validate(judged, loss_fn, val_shard, opt.batch_size, device, exclusive,
                                   autocast, rank, world, config["val_volumes"], postprocess, class_names)
        schedule.step_epoch(val_metrics[job.checkpoint.monitor])
        metrics = {"epoch": epoch, **train_metrics, **val_metrics, "lr": optimizer.param_groups[0]["lr"],
                   "epoch_time_s": time.perf_counter() - started, "train_time_s": train_time,
                   "data_wait_s": waited, "data_wait_share": waited / max(train_time, 1e-9),
                   "images_per_s": train.loss.examples / max(train_time, 1e-9),
                   "timestamp_ms": int(time.time() * 1000)}
        progress.update(metrics, job.checkpoint.monitor, opt.patience, opt.min_delta)
        metrics["best_score"] = progress.best_dice
        if logger is not None:
            logger.log(metrics, epoch)
        report(metrics, model, optimizer, schedule, scaler, progress, rank, average)
    if logger is not None:
        logger.close()


class PatientStats:
    """Validation predictions gathered per patient volume, post-processed and scored whole.

    Slice datasets (LGG) are judged per patient: the slices of a volume are stacked in order, the
    checkpoint's post-processing runs on the stack (3D largest component), and Dice is computed per
    volume, as :mod:`raysegment.evaluate` scores it. Each worker holds the volumes assigned to it.
    """

    def __init__(self, postprocess: PostprocessConfig):
        self.postprocess = postprocess
        self.slices: dict[int, list[tuple[int, np.ndarray, np.ndarray]]] = {}

    def add(self, volumes: torch.Tensor, slices: torch.Tensor, pred: torch.Tensor, truth: torch.Tensor) -> None:
        pred, truth = pred.cpu().numpy(), truth.cpu().numpy()
        for i, (v, k) in enumerate(zip(volumes.tolist(), slices.tolist())):
            self.slices.setdefault(int(v), []).append((int(k), pred[i], truth[i]))

    def counts(self, num_volumes: int, classes: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """``(V, 4, K)`` post-processed confusion counts per volume, and ``(empty slices, slices)``."""
        counts = torch.zeros(num_volumes, 4, classes, dtype=torch.float64)
        empty = torch.zeros(2, dtype=torch.float64)
        for v, items in self.slices.items():
            items.sort(key=lambda item: item[0])
            pred = self.postprocess.clean(np.stack([p for _, p, _ in items], axis=-1).astype(np.uint8))
            truth = np.stack([t for _, _, t in items], axis=-1)
            counts[v] = torch.from_numpy(np.stack(confusion_counts(pred[None], truth[None]))[:, 0].astype(np.float64))
            empty += torch.tensor([sum(not t.any() for _, _, t in items), len(items)], dtype=torch.float64)
        return counts.to(device), empty.to(device)


def weight_average(module: torch.nn.Module, decay: float | None):
    """An exponential moving average of ``module``'s weights and BatchNorm statistics (``optim.ema``), or None.

    A short schedule's final weights depend on its last few batches, and a handful of validation
    patients is too noisy a judge to pick a better epoch (README, "Accuracy on real scans"):
    averaging the weights over the last steps (Polyak averaging, timm's ModelEma) smooths both.
    """
    if decay is None:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(module, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


@torch.no_grad()
def validate(model, loss_fn, shard, batch_size, device, exclusive: bool, autocast, rank, world, num_volumes: int,
             postprocess: PostprocessConfig, class_names: list[str]) -> dict[str, float]:
    """Validation loss, and the scores of the post-processed masks: pooled over voxels and per patient.

    Every worker reads the whole (unsplit) validation set and predicts the volumes ``v`` with
    ``v % world == rank``, so each patient is assembled on one worker; the bare module is used, not
    its DDP wrapper, so no collective runs per batch.

    Returns:
        ``val_loss`` (and ``val_loss_<term>`` for each term of a combined loss); ``val_<score>`` of
        the pooled voxels for each of :data:`REPORTED_SCORES`; ``val_patient_dice`` (mean over
        patient volumes of the class-mean Dice), per class when there are several;
        ``val_empty_slices``, the share of validation slices without foreground (an empty slice
        predicted empty is a perfect score).
    """
    model.eval()
    losses = LossMeter(term_names(loss_fn), device)
    patients = PatientStats(postprocess)
    for batch in _batches(shard, batch_size, device):
        mine = (batch["volume"].long() % world) == rank
        if not mine.any():
            continue
        images, masks = batch["image"][mine], batch["mask"][mine]
        with autocast():
            logits = model(images)
            loss, terms = loss_with_terms(loss_fn, logits, masks)
        losses.add(loss, terms, len(images))
        if postprocess.mirror:  # the checkpoint is judged as evaluate and infer will predict with it
            pred = postprocess.masks_from_probabilities(batch_probabilities(model, images, exclusive, True, autocast), exclusive)
        else:
            pred = postprocess.masks_from_logits(logits.float(), exclusive)
        patients.add(batch["volume"][mine].long(), batch["slice"][mine].long(), pred, masks > 0.5)
    counts, empty = patients.counts(num_volumes, len(class_names), device)
    return validation_scores(losses, counts, empty, class_names)


@torch.no_grad()
def validate_volumes(model, loss_fn, shard, patch_size: list[int], batch_size, device, exclusive: bool, autocast, rank, world,
                     num_volumes: int, postprocess: PostprocessConfig, class_names: list[str]) -> dict[str, float]:
    """:func:`validate` for 3D models: each validation volume predicted whole through sliding windows.

    The volumes are scored on the model's (resampled) grid, with the same windows, mirroring and
    post-processing ``evaluate`` and ``infer`` use (:func:`raysegment.predict.volume_probabilities`);
    ``evaluate`` then scores on each scan's own grid. ``val_loss`` is the loss of the blended
    whole-volume logits; ``val_empty_slices`` counts the volumes' slices along their last axis.
    """
    from raysegment.predict import volume_probabilities, window_logits

    model.eval()
    losses = LossMeter(term_names(loss_fn), device)
    counts = torch.zeros(num_volumes, 4, len(class_names), dtype=torch.float64)
    empty = torch.zeros(2, dtype=torch.float64)
    for batch in shard.iter_batches(batch_size=1, batch_format="numpy"):
        v = int(batch["volume"][0])
        if v % world != rank:
            continue
        image = torch.from_numpy(np.ascontiguousarray(batch["image"][0], dtype=np.float32)).to(device)
        truth = torch.from_numpy(np.ascontiguousarray(batch["mask"][0], dtype=np.float32)).to(device)
        logits = window_logits(model, image[None], patch_size, batch_size, autocast)
        losses.add(*loss_with_terms(loss_fn, logits, truth[None]), 1)
        if postprocess.mirror:
            prob = volume_probabilities(model, image, patch_size, batch_size, exclusive, True, autocast)[None]
        else:
            prob = label_probabilities(logits, exclusive)
        pred = postprocess.clean(postprocess.masks_from_probabilities(prob, exclusive)[0].cpu().numpy().astype(np.uint8))
        truth_mask = truth.cpu().numpy() > 0.5
        counts[v] = torch.from_numpy(np.stack(confusion_counts(pred[None], truth_mask[None]))[:, 0].astype(np.float64))
        empty += torch.tensor([float((~truth_mask.any(axis=(0, 1, 2))).sum()), float(truth_mask.shape[-1])], dtype=torch.float64)
    return validation_scores(losses, counts.to(device), empty.to(device), class_names)


def validation_scores(losses: LossMeter, counts: torch.Tensor, empty: torch.Tensor, class_names: list[str]) -> dict[str, float]:
    """Sum the workers' validation counts and turn them into the reported figures (see :func:`validate`)."""
    out = losses.summary("val")
    if dist.is_available() and dist.is_initialized():
        for tensor in (counts, empty):
            dist.all_reduce(tensor)
    counts, empty = counts.cpu(), empty.cpu()
    pooled = scores_from_counts(*counts.sum(0))
    per_volume = scores_from_counts(*counts[counts.sum(dim=(1, 2)) > 0].permute(1, 0, 2))["dice"]  # (V, K)
    out.update({f"val_{name}": float(pooled[name].mean()) for name in REPORTED_SCORES})
    out["val_patient_dice"] = float(per_volume.mean(1).mean()) if len(per_volume) else 0.0
    out["val_empty_slices"] = float(empty[0] / empty[1].clamp(min=1))
    if len(class_names) > 1:
        out.update({f"val_dice_{name}": float(pooled["dice"][k]) for k, name in enumerate(class_names)})
        out.update({f"val_patient_dice_{name}": float(per_volume[:, k].mean()) for k, name in enumerate(class_names)})
    return out


def report(metrics, model, optimizer, schedule, scaler, progress: Progress, rank: int, average=None) -> None:
    """Every worker reports; rank 0 attaches the checkpoint (saved into a temporary directory)."""
    import ray.train

    with tempfile.TemporaryDirectory() as directory:
        checkpoint = None
        if rank == 0:
            save_state(directory, model, optimizer, schedule, scaler, progress, average)
            checkpoint = ray.train.Checkpoint.from_directory(directory)
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=f"epoch_{progress.epoch:04d}")

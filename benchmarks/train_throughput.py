"""Training throughput: raysegment's Ray Train loop vs a bare single-process PyTorch loop.

Same model, batch size, image size, thread count and machine, in one run. The Ray figure is the
images/s that ``raysegment.train`` measures itself (training steps of an epoch, data loading from
Ray Data, augmentation hook and metric counting included, first epoch left out as warm-up); the
bare figure is a plain shuffled loop over the same preprocessed training examples held in memory as
tensors, so the ratio is the cost of the whole distributed pipeline on one worker.

    python benchmarks/train_throughput.py --epochs 4 --image-size 64 --batch-size 16
    python benchmarks/train_throughput.py --base-channels 32 --image-size 256 --amp bf16   # on a GPU: adds MFU

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time


def load_train_examples(manifest: str, image_size: int):
    """The train split's preprocessed examples, read the way training reads them, held in memory."""
    import numpy as np
    import torch

    from raysegment.preprocess import PreprocessConfig, iter_examples
    from raysegment.train.data import load_splits, plain_row

    config = PreprocessConfig.model_validate({"steps": [{"name": "scale"}, {"name": "resize", "size": image_size}]})
    _, splits = load_splits(manifest, config, ["train"])
    examples = [ex for row in splits["train"].rows.to_dict(orient="records")
                for ex in iter_examples(plain_row(row), config, with_mask=True)]
    return (torch.from_numpy(np.stack([ex["image"] for ex in examples])),
            torch.from_numpy(np.stack([ex["mask"] for ex in examples])))


def bare_loop(model_config: dict, images, masks, batch_size: int, epochs: int, threads: int, amp: str) -> float:
    """Images/s of a plain shuffled epoch loop (forward, Dice loss, backward, Adam), first epoch left out.

    On a GPU it runs as training does there: channels-last, autocast ``amp``, loss scaling for fp16.
    """
    import torch

    from raysegment.losses import create_loss
    from raysegment.models import create_model, precision

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model("unet", in_channels=images.shape[1], classes=masks.shape[1], **model_config).to(device).train()
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    images, masks = images.to(device).contiguous(memory_format=memory_format), masks.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.autocast_dtype(amp, device) is torch.float16)
    autocast = precision.autocast(amp, device)
    loss_fn = create_loss("dice")
    rates = []
    for _ in range(epochs):
        started, seen = time.perf_counter(), 0
        for index in torch.randperm(len(images)).split(batch_size):
            if len(index) < batch_size:  # training drops the last partial batch too
                continue
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                loss = loss_fn(model(images[index]), masks[index])
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            seen += len(index)
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(seen / (time.perf_counter() - started))
    return sum(rates[1:]) / len(rates[1:])


def ray_loop(workdir: str, model_config: dict, batch_size: int, image_size: int, epochs: int, threads: int,
             amp: str) -> dict:
    import torch

    from raysegment.train import load_config, train

    config = load_config(None, {
        "out": f"{workdir}/run", "data.manifest": f"{workdir}/manifest.parquet",
        "data.preprocess.steps": [{"name": "scale"}, {"name": "resize", "size": image_size}],
        "data.augment.enabled": False,  # the bare loop does not augment either
        "model.name": "unet", "model.config": model_config, "optim.epochs": epochs, "optim.batch_size": batch_size,
        "optim.loss": "dice", "scaling.workers": 1, "scaling.cpus_per_worker": threads, "tracking.tensorboard": False,
        "scaling.gpus_per_worker": 1 if torch.cuda.is_available() else 0, "optim.amp": amp,
    })
    result = train(config)
    steady = result.history[result.history["epoch"] > 1]
    return {"images_per_s": float(steady["images_per_s"].mean()), "data_wait_share": float(steady["data_wait_share"].mean()),
            "train_examples_per_epoch": round(float((steady["images_per_s"] * steady["train_time_s"]).mean())),
            "wall_time_s": result.summary["wall_time_s"]}


def gpu_figures(model_config: dict, channels: int, image_size: int, ray_rate: float, bare_rate: float, amp: str) -> dict:
    """Device, amp and model FLOP utilisation of both loops (a training step = 3 forward passes)."""
    import torch

    from raysegment.models import create_model
    from raysegment.models.flops import forward_flops, mfu

    if not torch.cuda.is_available():
        return {"device": "cpu"}
    name = torch.cuda.get_device_name()
    model = create_model("unet", in_channels=channels, classes=1, **model_config)
    step = 3 * forward_flops(model, torch.rand(1, channels, image_size, image_size))
    return {"device": name, "amp": amp, "train_gflops_per_image": round(step / 1e9, 2),
            "ray_mfu": mfu(step, ray_rate, name), "bare_mfu": mfu(step, bare_rate, name)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--base-channels", type=int, default=16)
    parser.add_argument("--patients", type=int, default=16, help="sample LGG patients (30 slices each)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (and Ray CPUs) of the one worker")
    parser.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none", help="bf16 for the GPU figures")
    args = parser.parse_args()

    from raysegment.ingest import ingest
    from raysegment.runtime import init_ray
    from raysegment.sample_data import make_sample_data

    model_config = {"base_channels": args.base_channels, "depth": 3}
    with tempfile.TemporaryDirectory() as workdir:
        make_sample_data(f"{workdir}/data", "lgg", patients=args.patients, slices=30, size=args.image_size)
        ingest("lgg", f"{workdir}/data", f"{workdir}/manifest.parquet")
        images, masks = load_train_examples(f"{workdir}/manifest.parquet", args.image_size)
        # The bare loop runs before and after the Ray run (Ray idle but up): the ratio is taken
        # against the faster of the two, so machine drift cannot flatter raysegment.
        bare_before = bare_loop(model_config, images, masks, args.batch_size, args.epochs, args.threads, args.amp)
        init_ray()
        ray = ray_loop(workdir, model_config, args.batch_size, args.image_size, args.epochs, args.threads, args.amp)
        bare_after = bare_loop(model_config, images, masks, args.batch_size, args.epochs, args.threads, args.amp)
    bare = max(bare_before, bare_after)
    print(json.dumps({**gpu_figures(model_config, images.shape[1], args.image_size, ray["images_per_s"], bare, args.amp),
        "model": "unet", **model_config, "batch_size": args.batch_size, "image_size": args.image_size,
        "threads": args.threads, "train_examples": len(images),
        "bare_images_per_s": [round(bare_before, 2), round(bare_after, 2)],
        "ray_images_per_s": round(ray["images_per_s"], 2), "ratio": round(ray["images_per_s"] / bare, 3),
        # Share of the training time the loop waited for its next batch (Ray Data's iterator).
        "ray_data_wait_share": round(ray["data_wait_share"], 3),
        "ray_train_examples_per_epoch": ray["train_examples_per_epoch"], "ray_wall_time_s": round(ray["wall_time_s"], 1),
    }))


if __name__ == "__main__":
    main()

"""What every stage of an inference run needs, resolved once on the driver from config + checkpoint."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from raysegment.infer.config import InferConfig
from raysegment.postprocess import PostprocessConfig
from raysegment.preprocess import PreprocessConfig
from raysegment.sizing import CLUSTER_CPUS_PER_WORKER


@dataclass(frozen=True)
class Plan:
    """Small and picklable: it travels to every Ray task and actor.

    Attributes:
        out: output root URI.
        model_uri: checkpoint directory.
        model_id: ``<model name>-<12 hex digits of the SHA-256 of model.json and the post-processing>``;
            records of another model or post-processing do not count as done.
        preprocess: the checkpoint's PreprocessConfig as a dict.
        postprocess: the PostprocessConfig masks are made with, as a dict: the checkpoint's, with
            the config's ``threshold`` and ``largest_component`` laid over it where given.
        in_channels: channels the model takes.
        class_names: one name per model output channel.
        format: requested output format (``auto`` resolves per case).
        save_probabilities, one_hot, overwrite, batch_size: from the config.
        amp: autocast dtype of the forward passes (``none``, ``bf16``, ``fp16``).
        threads: intra-op threads of a predictor running on CPU (the CPUs it reserves, rounded up).
        case_timeout_s: seconds a case may spend in one stage (:mod:`.watchdog`); None: no limit.
    """

    out: str
    model_uri: str
    model_id: str
    preprocess: dict[str, Any]
    in_channels: int
    class_names: tuple[str, ...]
    format: str
    postprocess: dict[str, Any]
    save_probabilities: bool
    overwrite: bool
    batch_size: int
    threads: int = 1
    amp: str = "none"
    one_hot: bool = False
    case_timeout_s: float | None = None

    @classmethod
    def build(cls, config: InferConfig, metadata: dict[str, Any]) -> Plan:
        """Combine a run's config with its checkpoint's ``model.json`` (as ``read_metadata`` returns it)."""
        spec = metadata["model"]
        outputs = int(spec.get("classes", 1))
        preprocess = PreprocessConfig(**metadata.get("preprocess", {})).for_outputs(outputs)
        labels = outputs - 1 if preprocess.exclusive else outputs
        class_names = metadata.get("class_names") or preprocess.class_names
        if len(class_names) != labels:
            class_names = [f"class{k}" for k in range(labels)]
        overrides = {k: getattr(config, k) for k in ("threshold", "largest_component", "mirror") if getattr(config, k) is not None}
        postprocess = PostprocessConfig(**(metadata.get("postprocess") or {})).model_copy(update=overrides)
        # Masks made with another post-processing are other outputs: they must not count as done.
        digest = hashlib.sha256(json.dumps({**metadata, "postprocess": postprocess.model_dump()}, sort_keys=True).encode()).hexdigest()[:12]
        return cls(
            out=config.out,
            model_uri=config.model,
            model_id=f"{spec['name']}-{digest}",
            # Inference segments every slice, whatever subset training sampled.
            preprocess=preprocess.model_copy(update={"slice_selection": "all"}).model_dump(),
            in_channels=int(spec.get("in_channels", 3)),
            class_names=tuple(class_names),
            format=config.format,
            postprocess=postprocess.model_dump(),
            save_probabilities=config.save_probabilities,
            one_hot=config.one_hot,
            overwrite=config.overwrite,
            batch_size=config.batch_size,
            threads=max(1, math.ceil(config.cpus_per_worker or CLUSTER_CPUS_PER_WORKER)),  # None: not sized yet
            amp=config.amp,
            case_timeout_s=config.case_timeout_s,
        )

    @property
    def preprocess_config(self) -> PreprocessConfig:
        return PreprocessConfig(**self.preprocess)

    @property
    def postprocess_config(self) -> PostprocessConfig:
        return PostprocessConfig(**self.postprocess)

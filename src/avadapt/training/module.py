"""The training system around an ``AVModel``: steps, optimiser groups, schedule, metrics, adapter-only checkpoints."""

from __future__ import annotations

import copy
import math
import re
import warnings
from functools import partial
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.optim.lr_scheduler import LambdaLR

from avadapt import audio_front_ends
from avadapt.adapter_files import check_adapter_keys, trainable_state_keys
from avadapt.audio_front_ends import AudioFrontEnd, FbankConfig
from avadapt.data.sampling import derive_seed
from avadapt.data.transforms import VideoTransformConfig
from avadapt.kernels import cpu_supports_bf16, tune_heap_for_training
from avadapt.models import build_without_weights, create_model, paper_audio_front_end
from avadapt.tasks import get_task
from avadapt.training.schedule import warmup_cosine_factor, warmup_step_factor
from avadapt.types import AVBatch

# The frozen backbone stays in eval mode on purpose (frozen = requires_grad False + eval mode).
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")

TRAIN_LOSS = "train/loss"  # logged every step; read back by the TrainingCurves callback
LEARNING_RATE = "lr"  # each parameter group's learning rate is logged as lr/<group name>
SEED_KEY = "training_seed"  # the run's seed, in every checkpoint
MODEL_STREAM = 1  # derive_seed key that sets the model's random stream apart from the data order's
MIXUP_STREAM = 2  # derive_seed key of the audio mixup's weights


class AVAdaptModule(L.LightningModule):
    """Trains the adapters and head of one ``create_model(backbone, method, task)`` model.

    Optimisation follows STG-CMA's AVE script: Adam with two parameter groups (the method's trainable
    parameters at ``lr``, the head at ``head_lr_factor · lr``; a method may split its own, see ``lr``) and a per-iteration schedule, a linear warm-up
    from 0 and then a cosine down to ``min_lr`` (scaled per group). Checkpoints hold the trainable state only
    (:meth:`on_save_checkpoint`); the frozen backbone is rebuilt from its source when one is loaded.

    Each training epoch starts torch's random stream (dropout, stochastic depth) afresh from the run's seed
    (torch's seed when the module is built: ``seed_everything``) and the epoch number, so a run resumed from the
    checkpoint of an epoch's end trains the next epoch exactly as the run that never stopped.

    Args:
        backbone: timm model name, with an optional pretrained tag (``vit_base_patch16_clip_quickgelu_224.openai``).
        method: registered method (``stg_cma``, ``probe``, …).
        task: a registered task (``avadapt.tasks``).
        method_options: fields of the method's config, e.g. ``{preset: tiny}`` or ``{ratio: 1/16, fusion: none}``.
        task_options: fields of the task's config, e.g. ``{num_classes: 29}``.
        backbone_options: extra timm arguments (``img_size``, ``depth``…); ``audio`` may set the audio
            embedding's ``kernel_reduction``/``pos_embed`` (its size always follows the front end's fbank).
        pretrained: let timm load the tag's weights (its hub or the local Hugging Face cache).
        weights: local backbone checkpoint (``.safetensors`` or a torch state dict readable without unpickling).
        audio_front_end: name of the audio front end (``avadapt.audio_front_ends``: fbank settings, statistics
            and audio embedding) that both the model and the data are built with; default: the method's own,
            else the task's for the method and backbone family, else the family's
            (``models.paper_audio_front_end``).
        fbank: fbank fields that replace the front end's, e.g. ``{num_mel_bins: 64, target_frames: 48}`` for a
            tiny model; the spectrogram is ``num_mel_bins`` × ``target_frames``.
        class_names: names of the output classes (default: the data module's).
        lr: peak learning rate of the method's parameters; a method may train a group of them at a multiple of
            it (``AVMethod.parameter_groups``: AV-STFP's prompts at its ``prompt_lr_factor`` × lr).
        min_lr: learning rate at the end of the cosine, the same absolute floor for every group (head too).
        head_lr_factor: the head's learning rate relative to ``lr`` (STG-CMA AVE: 0.1).
        warmup_epochs: length of the linear warm-up from 0, in epochs (fractions allowed).
        lr_decay: after the warm-up, ``cosine`` (down to ``min_lr``) or ``step``: every group's rate times
            ``step_gamma`` every ``step_epochs`` epochs, counted from the start (DG-SCT's ``StepLR(3, 0.35)``).
        weight_decay: Adam's L2 weight decay.
        betas: Adam's moment coefficients.
        tune_cpu_heap: while training on a CPU, keep tensors up to 32 MiB on glibc's heap and give its free
            pages back after each frozen FFN in the last sixth of the blocks, so that resident memory at the
            step's peak stays near the live tensors (``avadapt.kernels.heap``; off with
            ``AVADAPT_CPU_HEAP_TUNING=0`` too).
        head_checkpoint: a pretraining checkpoint to start the head from (``TaskHead.load_pretrained``; AVQA: the
            references' grounding-pretraining checkpoint).
        compile_backbone: ``torch.compile`` the adapted backbone (``create_model``): True for torch's default
            backend, or a backend's name; off by default, as compiling delays the first step.
        audio_backbone, audio_weights, audio_backbone_options: a separate frozen audio encoder, its local
            checkpoint and its options, for methods that take one (DG-SCT; ``create_model``); the audio front end's
            spectrogram must then have the encoder's input size.
        audio_mixup_alpha: DG-SCT's audio mixup in training steps (its AVS and AVQA code: 0.5), see
            :func:`mix_audio`; 0 (the default) leaves the audio as it is. Labels are never mixed, and validation,
            test and prediction never mix.
        video_transform: how frames are brought to the input size where the backbone's data config says
            otherwise: ``crop_mode`` (``center``: resize keeping the aspect ratio, then centre-crop; ``squash``:
            the whole frame stretched), ``crop_pct``, ``interpolation`` (``create_model``). Recorded with the
            model's preprocessing, so the data module, caches and prediction use the same geometry.
    """

    def __init__(
        self,
        backbone: str = "vit_base_patch16_clip_quickgelu_224.openai",
        method: str = "stg_cma",
        *,
        task: str,
        method_options: dict[str, Any] | None = None,
        task_options: dict[str, Any] | None = None,
        backbone_options: dict[str, Any] | None = None,
        pretrained: bool = False,
        weights: str | None = None,
        audio_front_end: str | None = None,
        fbank: dict[str, Any] | None = None,
        class_names: list[str] | None = None,
        lr: float = 5e-5,
        min_lr: float = 2e-6,
        head_lr_factor: float = 0.1,
        warmup_epochs: float = 2.0,
        weight_decay: float = 5e-7,
        betas: tuple[float, float] = (0.95, 0.999),
        tune_cpu_heap: bool = True,
        head_checkpoint: str | None = None,
        audio_backbone: str | None = None,
        audio_weights: str | None = None,
        audio_backbone_options: dict[str, Any] | None = None,
        lr_decay: str = "cosine",
        step_epochs: float = 3.0,
        step_gamma: float = 0.35,
        compile_backbone: bool | str = False,
        audio_mixup_alpha: float = 0.0,
        video_transform: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()  # plain types only, so checkpoints load with torch.load(weights_only=True)
        if not 0 <= min_lr <= lr:
            raise ValueError(f"need 0 <= min_lr <= lr, got min_lr={min_lr}, lr={lr}")
        if lr_decay not in ("cosine", "step"):
            raise ValueError(f"lr_decay must be 'cosine' or 'step', got {lr_decay!r}")
        if step_epochs <= 0 or not 0 < step_gamma <= 1:
            raise ValueError(f"need step_epochs > 0 and 0 < step_gamma <= 1, got {step_epochs}, {step_gamma}")
        if warmup_epochs < 0 or head_lr_factor <= 0:
            raise ValueError(f"need warmup_epochs >= 0 and head_lr_factor > 0, got {warmup_epochs}, {head_lr_factor}")
        if audio_mixup_alpha < 0:
            raise ValueError(f"audio_mixup_alpha must be >= 0 (0: no mixup), got {audio_mixup_alpha}")
        if audio_front_end is None:
            audio_front_end = self._paper_front_end(backbone, method, task, backbone_options, method_options,
                                                    task_options)
            self.hparams["audio_front_end"] = audio_front_end  # a checkpoint rebuilds the same one
        self.front_end: AudioFrontEnd = audio_front_ends.audio_front_end(audio_front_end, fbank)
        self.class_names = list(class_names) if class_names is not None else None
        self._heap_tuning = None
        self.tune_cpu_heap = tune_cpu_heap
        self._frozen_in_bf16 = False
        self.model = create_model(
            backbone=backbone, method=method, task=task, pretrained=pretrained, weights=weights,
            backbone_options=backbone_options, audio_front_end=self.front_end, audio_backbone=audio_backbone,
            audio_weights=audio_weights, audio_backbone_options=audio_backbone_options,
            video_transform=video_transform, compile_backbone=compile_backbone, **(method_options or {}),
            **(task_options or {}),
        )
        VideoTransformConfig.from_timm(self.model.preprocessing["video"])  # a bad geometry fails here, not in a loader
        self.task = get_task(task)
        if head_checkpoint is not None:  # the trained head is then saved with the adapters, as any other
            loaded = self.model.head.load_pretrained(head_checkpoint)
            rank_zero_info(f"head started from {head_checkpoint}: {', '.join(loaded)}")
        metrics = self.model.head.metrics()
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.seed = torch.initial_seed()

    @staticmethod
    def _paper_front_end(backbone: str, method: str, task: str, backbone_options: dict[str, Any] | None,
                         method_options: dict[str, Any] | None, task_options: dict[str, Any] | None) -> str:
        """The audio front end of the method's paper for the backbone's family, found by a weightless build."""
        options = {k: v for k, v in (backbone_options or {}).items() if k != "audio"}
        family = build_without_weights(backbone=backbone, method=method, task=task, backbone_options=options,
                                       **(method_options or {}), **(task_options or {})).backbone.family
        return paper_audio_front_end(method, family, task)

    # ---- what the data side and the exporter read -------------------------------------------------
    @property
    def fbank(self) -> FbankConfig:
        """The fbank settings of the model's audio front end."""
        return self.front_end.fbank

    @property
    def preprocessing(self) -> dict[str, Any]:
        """How inputs must be made for this model (``AVModel.preprocessing``): the video data config, the audio
        front end's name and its fbank values (the data module and ``predict`` read both), the number of segments,
        the task's dataset (the data module's default) and what the head needs the dataset built with
        (``TaskHead.data_options``)."""
        return copy.deepcopy(self.model.preprocessing)

    @property
    def backbone_source(self) -> dict[str, Any]:
        source = {"pretrained": self.hparams.pretrained, "weights": self.hparams.weights}
        if self.hparams.get("audio_backbone") is not None:
            source["audio_weights"] = self.hparams.audio_weights
        return source

    def forward(self, video: torch.Tensor, audio: torch.Tensor, **inputs: torch.Tensor) -> Any:
        return self.model(video, audio, **inputs)

    @property
    def monitor(self) -> str:
        """The logged metric that selects checkpoints: ``val/`` + the task's monitor (``val/accuracy`` for AVE)."""
        return f"val/{self.task.monitor}"

    def setup(self, stage: str) -> None:
        """Fail before the first step when the data's classes do not fit the head."""
        datamodule = getattr(self.trainer, "datamodule", None)
        data_classes = getattr(datamodule, "num_classes", None)
        head_classes = self.model.spec["task_config"].get("num_classes")
        if data_classes is not None and head_classes is not None and data_classes != head_classes:
            raise ValueError(f"the data have {data_classes} classes (background included) but the head predicts "
                             f"{head_classes}; set model.task_options.num_classes={data_classes}")
        if self.class_names is not None and head_classes is not None and len(self.class_names) != head_classes:
            raise ValueError(f"{len(self.class_names)} class_names for a head with {head_classes} classes")

    # ---- steps ------------------------------------------------------------------------------------
    def on_train_start(self) -> None:
        if self.tune_cpu_heap and self.device.type == "cpu" and self._heap_tuning is None:
            self._heap_tuning = tune_heap_for_training(self.model.backbone)
        if str(self.trainer.precision).startswith("bf16"):  # frozen fp32 masters would be dead memory
            if self.device.type == "cpu" and not cpu_supports_bf16():
                # e.g. AMD Zen 3 (AVX2 only): a 2048² bf16 matmul ran at 0.27 GFLOP/s there against 115 in fp32
                warnings.warn("bf16 training on a CPU without native bf16 arithmetic (AVX512-BF16 or AMX): every "
                              "bf16 matmul is emulated and hundreds of times slower than fp32; use "
                              "precision 32-true on this machine (the default here)", stacklevel=2)
            self._frozen_in_bf16 = self.model.backbone.store_frozen_weights_as(torch.bfloat16) > 0

    def on_train_end(self) -> None:
        if self._heap_tuning is not None:
            self._heap_tuning.undo()
            self._heap_tuning = None
        if self._frozen_in_bf16:  # code that runs the model afterwards without autocast expects fp32 weights
            self.model.backbone.store_frozen_weights_as(torch.float32)
            self._frozen_in_bf16 = False

    def on_train_epoch_start(self) -> None:
        torch.manual_seed(derive_seed(self.seed, self.current_epoch, MODEL_STREAM, self.global_rank))

    def on_train_batch_start(self, batch: AVBatch, batch_idx: int) -> None:
        """Log the learning rate each parameter group trains this step with (``lr/method``, ``lr/head``)."""
        for optimizer in self.trainer.optimizers:
            for index, group in enumerate(optimizer.param_groups):
                self.log(f"{LEARNING_RATE}/{group.get('name', index)}", group["lr"], on_step=True, on_epoch=False,
                         batch_size=len(batch))

    def training_step(self, batch: AVBatch, batch_idx: int) -> torch.Tensor:
        loss = self.model.head.loss(self._outputs(batch, self.training_audio(batch.audio, batch_idx)), batch.targets)
        self.log(TRAIN_LOSS, loss, prog_bar=True, batch_size=len(batch))
        return loss

    def training_audio(self, audio: torch.Tensor, batch_idx: int) -> torch.Tensor:
        """The audio a training step feeds the model: the batch's, mixed by :func:`mix_audio` when
        ``audio_mixup_alpha`` > 0 with weights drawn from the run's seed, the epoch and the batch index (a resumed
        run draws the same ones). Items that share a clip (AVQA's questions of one video) are encoded once, from
        the first one's mix."""
        alpha = self.hparams.get("audio_mixup_alpha", 0.0)
        if alpha <= 0:
            return audio
        rng = np.random.default_rng(derive_seed(self.seed, self.current_epoch, MIXUP_STREAM, batch_idx,
                                                self.global_rank))
        weights = torch.from_numpy(rng.beta(alpha, alpha, size=audio.shape[:2]))  # (B, T)
        return mix_audio(audio, weights.to(device=audio.device, dtype=audio.dtype))

    def _outputs(self, batch: AVBatch, audio: torch.Tensor | None = None) -> Any:
        inputs = {name: batch.inputs[name] for name in self.task.inputs if name in batch.inputs}
        return self.model(batch.video, batch.audio if audio is None else audio, **inputs)

    def _evaluate(self, batch: AVBatch, stage: str) -> None:
        outputs = self._outputs(batch)
        self.log(f"{stage}/loss", self.model.head.loss(outputs, batch.targets), batch_size=len(batch),
                 sync_dist=True)
        self.model.head.update_metrics(getattr(self, f"{stage}_metrics"), outputs, batch.targets)

    def validation_step(self, batch: AVBatch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: AVBatch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def _log_metrics(self, stage: str) -> None:
        metrics = getattr(self, f"{stage}_metrics")
        names = self.class_names or self._datamodule_class_names()
        for key, value in metrics.compute().items():
            # compute() already gathered every device's counts: sync_dist only averages equal values
            if value.numel() == 1:
                self.log(key, value, prog_bar=key == f"{stage}/{self.task.monitor}", sync_dist=True)
                continue
            for index, per_class in enumerate(value):  # one scalar per class, e.g. val/class_accuracy/07_violin
                label = _slug(names[index]) if names and index < len(names) else ""
                self.log(f"{key}/{index:02d}{'_' + label if label else ''}", per_class, sync_dist=True)
        metrics.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    def _datamodule_class_names(self) -> list[str] | None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        return getattr(datamodule, "class_names", None)

    # ---- optimisation -----------------------------------------------------------------------------
    def parameter_groups(self) -> list[dict[str, Any]]:
        """The method's groups (adapters, gates, embeddings, tuned norms: ``lr``; a method may set a group's
        factor, e.g. AV-STFP's prompts at ``prompt_lr_factor · lr``), then the head at ``head_lr_factor · lr``."""
        lr = self.hparams.lr
        groups = [{"params": list(group.params), "lr": lr * group.lr_factor, "name": group.name}
                  for group in self.model.method.parameter_groups()]
        groups.append({"params": [p for p in self.model.head.parameters() if p.requires_grad],
                       "lr": lr * self.hparams.head_lr_factor, "name": "head"})
        grouped = [id(p) for group in groups for p in group["params"]]
        if sorted(grouped) != sorted(id(p) for p in self.model.trainable_parameters()):
            raise ValueError(f"the parameter groups of {self.hparams.method!r} must hold every trainable parameter "
                             "exactly once")
        return [group for group in groups if group["params"]]

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        optimizer = torch.optim.Adam(self.parameter_groups(), lr=hp.lr, betas=tuple(hp.betas),
                                     weight_decay=hp.weight_decay)
        total = int(self.trainer.estimated_stepping_batches)
        epochs = self.trainer.max_epochs
        steps_per_epoch = math.ceil(total / epochs) if epochs and epochs > 0 else total
        warmup = min(round(hp.warmup_epochs * steps_per_epoch), total)
        if hp.lr_decay == "step":
            every = max(round(hp.step_epochs * steps_per_epoch), 1)
            factors = [partial(warmup_step_factor, warmup_steps=warmup, steps_per_decay=every, gamma=hp.step_gamma)
                       for _ in optimizer.param_groups]
        else:
            factors = [partial(warmup_cosine_factor, warmup_steps=warmup, total_steps=total, lr=group["lr"],
                               min_lr=hp.min_lr) for group in optimizer.param_groups]
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": LambdaLR(optimizer, factors), "interval": "step", "name": "lr"}}

    # ---- adapter-only checkpoints -----------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep trainable parameters and buffers only: the frozen backbone is never written. Add the run's seed."""
        keep = set(trainable_state_keys(self))
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        checkpoint[SEED_KEY] = self.seed

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.seed = int(checkpoint.get(SEED_KEY, self.seed))

    def load_state_dict(self, state_dict: dict[str, torch.Tensor], strict: bool = True, assign: bool = False):
        """Load a trainable-only state dict; with ``strict``, exactly the trainable keys must be there.

        A full state dict (backbone included) is accepted too: frozen keys are then loaded as well.
        """
        trainable = trainable_state_keys(self)
        own = set(self.state_dict())
        if strict:
            check_adapter_keys(trainable, [k for k in state_dict if k in trainable or k not in own], "checkpoint")
        return super().load_state_dict(state_dict, strict=False, assign=assign)


def mix_audio(audio: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """DG-SCT's audio mixup (haoyi-duan/DG-SCT, HTS-AT's ``do_mixup`` in its AVS and AVQA models): the batch's
    segments in one list (B·T), each mixed with the segment at the mirrored position, λ·x + (1 − λ)·x_mirror,
    one λ per segment. ``audio`` (B, T, 1, F, L), ``weights`` λ (B, T) → (B, T, 1, F, L).

    The mirror of segment t of clip b is segment T − 1 − t of clip B − 1 − b (the reference flips the flattened
    B·T axis). The reference mixes HTS-AT's log-mel after ``bn0`` and before the time stretch; a mix with weights
    λ and 1 − λ commutes with both (``bn0`` is affine per mel bin in eval mode, the stretch linear along time with
    weights summing to 1), so mixing the log-mel the model reads is the same.
    """
    if weights.shape != audio.shape[:2]:
        raise ValueError(f"need one mixup weight per segment {tuple(audio.shape[:2])}, got {tuple(weights.shape)}")
    flat = audio.flatten(0, 1)  # (B*T, 1, F, L)
    lam = weights.reshape(-1, *(1,) * (flat.dim() - 1))  # (B*T, 1, 1, 1)
    return (lam * flat + (1 - lam) * flat.flip(0)).view_as(audio)


def _slug(name: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()[:32]

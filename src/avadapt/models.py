"""The front door: ``create_model(backbone=, method=, task=, **cfg)`` and the parameter report."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

import avadapt.methods
import avadapt.tasks  # noqa: F401  (registers tasks)
from avadapt import audio_front_ends
from avadapt._registry import METHODS
from avadapt.audio_front_ends import AudioFrontEnd
from avadapt.backbones import AudioEmbeddingConfig, Backbone, create_audio_backbone, create_backbone
from avadapt.errors import OptionError
from avadapt.methods.base import AVMethod
from avadapt.tasks import Task, get_task
from avadapt.types import AVFeatures


class AVModel(nn.Module):
    """A method (frozen backbone + inserted modules) followed by a task head.

    ``spec`` records everything needed to rebuild the model without weights (saved with adapters).
    ``preprocessing`` says how its inputs are made (``{"video": timm data config, "audio_front_end": name,
    "fbank": {...}, "num_segments": T, ...}``) and ``backbone_source`` where its frozen weights came from
    (``{"pretrained": bool, "weights": path or None}``); ``save_adapter`` records both, so that an adapter
    saved from any training loop can be loaded and used for prediction.
    """

    def __init__(self, method: AVMethod, head: nn.Module, spec: dict[str, Any],
                 preprocessing: dict[str, Any] | None = None, backbone_source: dict[str, Any] | None = None):
        super().__init__()
        self.method = method
        self.head = head
        self.spec = spec
        self.task = get_task(spec["task"])
        self.preprocessing = preprocessing
        self.backbone_source = backbone_source or {"pretrained": False, "weights": None}

    @property
    def backbone(self) -> Backbone:
        return self.method.backbone

    @property
    def audio_backbone(self) -> Backbone:
        """The audio encoder: the method's separate one, else the shared backbone."""
        return self.method.audio_backbone

    def features(self, video: torch.Tensor | None, audio: torch.Tensor | None) -> AVFeatures:
        return self.method(video, audio)

    def forward(self, video: torch.Tensor | None, audio: torch.Tensor | None, **inputs: torch.Tensor) -> Any:
        """The task's outputs (AVE: (B, T, C) logits); ``inputs`` are the task's extra inputs (``Task.inputs``).

        Items of one clip (the task's ``clip_input``, e.g. a video's questions) share one backbone pass: the
        clip's first item in the batch is encoded and its features go to every item of that clip."""
        clip_input = self.task.clip_input
        clips = inputs.get(clip_input) if clip_input else None
        if clips is None:
            return self.head(self.method(video, audio), **inputs)
        first, inverse = first_of_each_clip(clips)
        if len(first) == len(clips):
            return self.head(self.method(video, audio), **inputs)

        def encoded(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.index_select(0, first)

        return self.head(self.method(encoded(video), encoded(audio)).select(inverse), **inputs)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]


def first_of_each_clip(clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) clip numbers → the batch positions of each clip's first item (U,), and for every item the number of
    its clip among those (B,), so that ``first[inverse]`` picks an item of the same clip for every item."""
    unique, inverse = torch.unique(clips, return_inverse=True)
    positions = torch.arange(len(clips), device=clips.device)
    first = torch.full((len(unique),), len(clips), dtype=torch.long, device=clips.device)
    first = first.scatter_reduce(0, inverse, positions, reduce="amin")
    return first, inverse


def video_data_config(model: AVModel) -> dict[str, Any]:
    """The backbone's timm data config, with the input size the model was built for."""
    return backbone_video_config(model.backbone)


def backbone_video_config(backbone: Backbone) -> dict[str, Any]:
    """A backbone's timm data config, with the input size its patch embedding was built for.

    timm resolves the config from the pretrained tag, so a model built with ``img_size=64`` still reports
    the tag's 160/224; the transform must produce what the patch embedding accepts.
    """
    config = dict(backbone.data_config)
    patch_embed = getattr(getattr(backbone, "model", None), "patch_embed", None)
    img_size = getattr(patch_embed, "img_size", None)
    if img_size is not None:
        config["input_size"] = (3, *img_size)
    return config


# Fields of the video data config a model may set apart from its backbone's: how frames are brought to the input
# size (``avadapt.data.transforms.VideoTransformConfig`` reads and validates them).
VIDEO_GEOMETRY_FIELDS = ("crop_mode", "crop_pct", "interpolation")


def default_preprocessing(model: AVModel, front_end: AudioFrontEnd,
                          video_transform: dict[str, Any] | None = None) -> dict[str, Any]:
    """How inputs are made for ``model`` when its audio is cut by ``front_end``: the backbone's data config at its
    input size with the ``video_transform`` fields replacing its own, the front end's name and fbank values (its
    spectrogram size set to what the audio embedding reads), the number of segments, the task's dataset and what
    the head needs it built with. The data module and prediction read this record."""
    unknown = sorted(set(video_transform or {}) - set(VIDEO_GEOMETRY_FIELDS))
    if unknown:
        raise OptionError(f"video_transform sets {', '.join(VIDEO_GEOMETRY_FIELDS)}; not {', '.join(unknown)}")
    audio = model.audio_backbone.audio
    size = {"num_mel_bins": audio.num_mel_bins, "target_frames": audio.num_frames}
    fbank = front_end.with_fbank(**{k: v for k, v in size.items() if getattr(front_end.fbank, k) != v}).fbank
    video = {**video_data_config(model), **(video_transform or {})}
    return {"video": video, "audio_front_end": front_end.name, "fbank": fbank.to_dict(),
            "num_segments": model.method.num_frames, "dataset": model.task.dataset,
            "dataset_options": model.head.data_options()}


def _split_options(cfg: dict[str, Any], method_cls: type, task: Task) -> tuple[dict, dict]:
    method_keys, task_keys = method_cls.config_class.field_names(), task.config_class.field_names()
    unknown = sorted(set(cfg) - method_keys - task_keys)
    if unknown:
        raise TypeError(f"unknown option(s) {unknown}; method options: {sorted(method_keys)}, "
                        f"task options: {sorted(task_keys)}")
    return ({k: v for k, v in cfg.items() if k in method_keys}, {k: v for k, v in cfg.items() if k in task_keys})


def audio_embedding(front_end: str | AudioFrontEnd, overrides: AudioEmbeddingConfig | dict[str, Any] | None = None,
                    ) -> AudioEmbeddingConfig:
    """The audio embedding of a named (or resolved) audio front end: its spectrogram size is the front end's
    fbank size; ``overrides`` may change ``kernel_reduction`` / ``pos_embed``, and may repeat the size but not
    change it (the size is set in the front end's fbank only, which the data pipeline reads too)."""
    front_end = audio_front_ends.audio_front_end(front_end) if isinstance(front_end, str) else front_end
    options = front_end.embedding_options()
    user = dict(overrides.__dict__ if isinstance(overrides, AudioEmbeddingConfig) else overrides or {})
    for key, fbank_key in (("num_mel_bins", "num_mel_bins"), ("num_frames", "target_frames")):
        if user.setdefault(key, options[key]) != options[key]:
            raise ValueError(f"backbone_options.audio.{key}={user[key]} disagrees with the {front_end.name!r} audio "
                             f"front end's fbank.{fbank_key}={options[key]}; set it in the fbank only")
    return AudioEmbeddingConfig(**{**options, **user})


def paper_audio_front_end(method: str, family: str, task: str) -> str:
    """The audio front end a ``method`` model on a ``family`` backbone ("vit" | "swin") trains ``task`` with
    unless told otherwise: the task's for the method and family (``Task.paper_audio_front_ends``; DG-SCT on AVS:
    ``htsat_avs``), else the method's own where its paper gives it an audio encoder of its own (DG-SCT:
    ``htsat``), else the family's default (``audio_front_ends.FAMILY_AUDIO_FRONT_ENDS``)."""
    chosen = (get_task(task).paper_audio_front_ends.get((method, family))
              or METHODS.get(method).paper_audio_front_end)
    if chosen is None and family not in audio_front_ends.FAMILY_AUDIO_FRONT_ENDS:
        raise OptionError(f"no default audio front end for a {family!r} backbone; name one of "
                          f"{', '.join(sorted(audio_front_ends.AUDIO_FRONT_ENDS))}")
    return chosen or audio_front_ends.FAMILY_AUDIO_FRONT_ENDS[family]


def create_model(
    backbone: str = "vit_base_patch16_clip_224",
    method: str = "stg_cma",
    *,
    task: str,
    pretrained: bool = False,
    weights: str | Path | None = None,
    backbone_options: dict[str, Any] | None = None,
    audio_front_end: str | AudioFrontEnd | None = None,
    audio_backbone: str | None = None,
    audio_weights: str | Path | None = None,
    audio_backbone_options: dict[str, Any] | None = None,
    video_transform: dict[str, Any] | None = None,
    compile_backbone: bool | str = False,
    **cfg: Any,
) -> AVModel:
    """Build an adapted model.

    backbone: timm name (with an optional pretrained tag). task: a registered task (``avadapt.tasks``).
    pretrained / weights: see ``create_backbone``.
    backbone_options: extra ``create_backbone`` arguments (audio embedding config, timm kwargs).
    audio_front_end: a named entry of ``avadapt.audio_front_ends`` (or one resolved with changed fbank values);
    the audio embedding is then the entry's (see :func:`audio_embedding`), ``backbone_options["audio"]`` may
    change its kernel reduction or position fit. Without a front end and without an ``audio`` entry, the
    backbone family's default with the method's paper setting applies (``AVMethod.default_audio``).
    audio_backbone: a separate frozen audio encoder (``backbones.create_audio_backbone`` name), for methods
    that declare ``accepts_audio_backbone`` (DG-SCT); None: audio goes through ``backbone`` too.
    audio_weights: a local checkpoint of the audio encoder. audio_backbone_options: its extra arguments (timm
    kwargs, ``audio``: its embedding config). With a separate encoder the audio front end's embedding and an
    ``audio`` entry apply to it, not to the visual backbone.
    video_transform: how frames are brought to the input size where the backbone's data config says otherwise
    (``crop_mode`` ``"center"`` or ``"squash"``, ``crop_pct``, ``interpolation``), e.g. ``{"crop_mode": "squash",
    "crop_pct": 1.0}`` for the whole frame stretched to the input size, as the LAVISH and DG-SCT loaders do.
    compile_backbone: ``torch.compile`` the adapted backbone (the method: frozen backbone and inserted
    modules; the head stays eager) on its first call, with torch's default backend (True) or the named one.
    Traced code takes the plain PyTorch path of ``avadapt.kernels``, the one the compiler optimises; the
    compiler's own start-up takes a while, so it pays off for long runs (training on a GPU), not short ones.
    cfg: options of the method's and the task's config dataclasses (e.g. ``preset="tiny"``,
    ``fusion="none"``, ``num_classes=29``); an option neither knows is an error.

    The model records how its inputs are made (``model.preprocessing``: :func:`default_preprocessing` with
    ``audio_front_end``, or without one the front end of the method's paper for the backbone family,
    :func:`paper_audio_front_end`) and where its backbone weights came from (``model.backbone_source``), so an
    adapter saved from a training loop of one's own (``save_adapter``) predicts as one saved by ``avadapt fit``.
    """
    method_cls, task_spec = METHODS.get(method), get_task(task)
    if not isinstance(compile_backbone, bool) and compile_backbone not in (
            backends := torch.compiler.list_backends(exclude_tags=())):
        raise OptionError(f"compile_backbone={compile_backbone!r}: not a torch.compile backend; use True (the "
                          f"default backend), False, or one of {', '.join(backends)}")
    method_opts, task_opts = _split_options(cfg, method_cls, task_spec)
    task_opts = {**method_cls.paper_task_options.get(task, {}), **task_opts}
    if "num_frames" in method_cls.config_class.field_names():  # the task's clip length unless told otherwise
        method_opts.setdefault("num_frames", task_spec.num_segments)
    method_config = method_cls.config_class.from_dict(method_opts)
    task_config = task_spec.config_class.from_dict(task_opts)
    front_end = (audio_front_ends.audio_front_end(audio_front_end) if isinstance(audio_front_end, str)
                 else audio_front_end)
    if front_end is not None and front_end.encoder == "htsat":
        if audio_backbone is None:
            audio_backbone = "htsat"  # the front end feeds HTS-AT's encoder, not the image backbone
        elif not (audio_backbone == "htsat" or audio_backbone.startswith("htsat_")):
            raise OptionError(f"the {front_end.name!r} audio front end feeds an HTS-AT encoder (audio_backbone "
                              f"'htsat' or 'htsat_<preset>'), not {audio_backbone!r}")
        if not method_cls.accepts_audio_backbone:
            raise OptionError(f"the {front_end.name!r} audio front end needs a method with its own audio encoder; "
                              f"{method!r} encodes audio with its visual backbone")
    if audio_backbone is None and (audio_weights is not None or audio_backbone_options):
        raise OptionError("audio_weights / audio_backbone_options describe a separate audio encoder: "
                          "name it with audio_backbone=")
    if audio_backbone is not None and not method_cls.accepts_audio_backbone:
        raise OptionError(f"method {method!r} encodes audio with its visual backbone and takes no separate "
                          f"audio encoder (audio_backbone={audio_backbone!r}); methods that do: "
                          f"{', '.join(n for n in METHODS.names() if METHODS.get(n).accepts_audio_backbone)}")
    options = dict(backbone_options or {})
    audio_options = dict(audio_backbone_options or {})
    audio_side = audio_options if audio_backbone is not None else options  # the options of the audio encoder
    if front_end is not None:
        audio_side["audio"] = audio_embedding(front_end, audio_side.get("audio"))
    elif isinstance(audio_side.get("audio"), dict):
        audio_side["audio"] = AudioEmbeddingConfig(**audio_side["audio"])
    frozen = create_backbone(backbone, pretrained=pretrained, weights=weights, **options)
    audio_encoder = None
    if audio_backbone is not None:
        audio_encoder = create_audio_backbone(audio_backbone, weights=audio_weights, **audio_options)
    elif options.get("audio") is None:
        preferred_audio = method_cls.default_audio(frozen)
        if preferred_audio is not None:
            frozen.audio = preferred_audio
    if audio_encoder is not None:
        adapted = method_cls(frozen, method_config, audio_backbone=audio_encoder)
    else:
        adapted = method_cls(frozen, method_config)
    head = task_spec.build_head(adapted.feature_spec(), task_config)
    if compile_backbone:  # in place: parameter names, and so adapter files, stay those of the eager model
        adapted.compile(**({} if compile_backbone is True else {"backend": compile_backbone}))
    spec = {
        "backbone": backbone,
        "method": method,
        "task": task,
        "method_config": method_config.to_dict(),
        "task_config": task_config.to_dict(),
        "audio_embedding": adapted.audio_backbone.audio.__dict__.copy(),
        "backbone_options": {k: v for k, v in options.items() if k != "audio"},
    }
    source = {"pretrained": pretrained, "weights": str(weights) if weights is not None else None}
    if audio_encoder is not None:
        spec["audio_backbone"] = audio_backbone
        spec["audio_backbone_options"] = {k: v for k, v in audio_options.items() if k != "audio"}
        source["audio_weights"] = str(audio_weights) if audio_weights is not None else None
    model = AVModel(adapted, head, spec, backbone_source=source)
    if front_end is None:
        front_end = audio_front_ends.audio_front_end(paper_audio_front_end(method, frozen.family, task))
    model.preprocessing = default_preprocessing(model, front_end, video_transform)
    return model


def _count(module: nn.Module, trainable: bool | None = None) -> int:
    return sum(p.numel() for p in module.parameters() if trainable is None or p.requires_grad == trainable)


def parameter_report(model: AVModel) -> dict[str, Any]:
    """Trainable and total parameter counts (integers), with the trainable ones broken down by role.

    Roles are the method's own submodules (for block lists: the block's submodules, summed over blocks),
    found by structure, not by name matching. A method may name its own roles instead
    (``parameter_breakdown()``: DG-SCT's adapter parts by kind, summed over all adapters).
    """
    breakdown: OrderedDict[str, int] = OrderedDict()
    method = model.method
    if hasattr(method, "parameter_breakdown"):
        breakdown.update(method.parameter_breakdown())
    else:
        for name, child in method.named_children():
            if child is method.backbone or child is method.audio_encoder:
                continue
            if isinstance(child, nn.ModuleList):
                for block in child:
                    for part_name, part in block.named_children():
                        key = f"{name}.{part_name}"
                        breakdown[key] = breakdown.get(key, 0) + _count(part, True)
            else:
                breakdown[name] = _count(child, True)
    breakdown["head"] = _count(model.head, True)
    breakdown["backbone (trainable part)"] = _count(method.backbone, True)
    if method.audio_encoder is not None:
        breakdown["audio backbone (trainable part)"] = _count(method.audio_encoder, True)
    total, trainable = _count(model), _count(model, True)
    return {
        "backbone": model.spec["backbone"],
        "method": model.spec["method"],
        "task": model.spec["task"],
        **({"audio_backbone": model.spec["audio_backbone"]} if "audio_backbone" in model.spec else {}),
        "trainable": trainable,
        "total": total,
        "frozen": total - trainable,
        "trainable_percent": round(100 * trainable / total, 3),
        "breakdown": {k: v for k, v in breakdown.items() if v},
    }


def build_without_weights(**kwargs: Any) -> AVModel:
    """The model on PyTorch's meta device: shapes and counts without memory or initialisation cost."""
    with torch.device("meta"):
        return create_model(pretrained=False, weights=None, **kwargs)

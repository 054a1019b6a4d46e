"""Adapter-only checkpoints: ``config.json`` (what rebuilds the model) + ``adapter.safetensors`` (its weights).

The PEFT habit: a trained model is the frozen backbone, which everyone already has, plus megabytes of
adapters and head. Saving writes only the latter, with the model's ``spec`` and the preprocessing that
produced its inputs; loading rebuilds the model from the spec, obtains backbone weights from a file or
the timm tag, and then insists that the file holds exactly the trainable state — any missing or
unexpected key is an error naming the keys, never a silent ``strict=False``.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from avadapt._files import replaced_atomically
from avadapt.backbones import AudioEmbeddingConfig
from avadapt.errors import CheckpointError
from avadapt.models import AVModel, create_model

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "adapter.safetensors"
FORMAT = "avadapt-adapter"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "format_version", "spec")
REQUIRED_SPEC_KEYS = ("backbone", "method", "task", "method_config", "task_config", "audio_embedding")


class AdapterMismatchError(CheckpointError):
    """An adapter file whose keys or shapes do not match the model its config rebuilds."""


class RandomBackboneWarning(UserWarning):
    """The backbone was rebuilt with random weights: predictions mean nothing for real data."""


def _frozen_modules(model: nn.Module) -> list[str]:
    """Names (with a trailing dot) of modules that own parameters, none of them trainable."""
    frozen = []
    for name, module in model.named_modules():
        params = list(module.parameters())
        if name and params and not any(p.requires_grad for p in params):
            frozen.append(name + ".")
    return frozen


def trainable_state_keys(model: nn.Module) -> list[str]:
    """State-dict keys that training changes: trainable parameters and the buffers outside frozen modules.

    Buffers of a frozen module (the backbone, a frozen audio encoder) are fixed by its weights; buffers of
    method and head modules (e.g. running statistics of a norm in a head) are learnt state and are kept.
    """
    state = model.state_dict(keep_vars=True)
    params = {name for name, p in model.named_parameters(remove_duplicate=False) if p.requires_grad}
    frozen_params = {name for name, p in model.named_parameters(remove_duplicate=False) if not p.requires_grad}
    frozen_prefixes = tuple(_frozen_modules(model))
    keys = []
    for key in state:
        if key in params:
            keys.append(key)
        elif key not in frozen_params and not key.startswith(frozen_prefixes):
            keys.append(key)  # a buffer of a module that trains
    return keys


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state that training changes (see :func:`trainable_state_keys`), detached."""
    state = model.state_dict()
    return {key: state[key] for key in trainable_state_keys(model)}


def check_adapter_keys(expected: Iterable[str], found: Iterable[str], source: str) -> None:
    """Raise :class:`AdapterMismatchError` unless ``found`` is exactly ``expected``."""
    expected, found = set(expected), set(found)
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    if missing or unexpected:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" … ({len(keys)} in all)" if len(keys) > 8 else "") if keys else "none"

        raise AdapterMismatchError(
            f"{source} does not match the model its config describes: "
            f"missing keys: {show(missing)}; unexpected keys: {show(unexpected)}. "
            "An adapter file holds exactly the trainable parameters and buffers of the method and head; "
            "was it saved from a different method, preset or backbone?"
        )


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``state`` into ``model``'s trainable part, strictly: same keys, same shapes."""
    check_adapter_keys(trainable_state_keys(model), state, source)
    own = model.state_dict()
    wrong = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in state.items()
             if v.shape != own[k].shape]
    if wrong:
        raise AdapterMismatchError(f"{source}: wrong shapes: {'; '.join(wrong[:8])}")
    result = model.load_state_dict(state, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys  # checked above


def save_adapter(
    model: AVModel,
    directory: str | Path,
    class_names: list[str] | None = None,
    preprocessing: dict[str, Any] | None = None,
    *,
    backbone_source: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``directory/config.json`` and ``directory/adapter.safetensors``; returns the directory.

    class_names: one name per output class, in index order (kept for predictions and reports).
    preprocessing: how inputs were made, e.g. ``{"video": <timm data config>, "audio_front_end": "vit",
    "fbank": FbankConfig.to_dict()}``.
    backbone_source: how the backbone weights were obtained in training (``{"pretrained": bool,
    "weights": path or None}``, plus ``"audio_weights"`` for a separate audio encoder), so
    :func:`load_adapter` can find them again.
    extra: free-form provenance (metrics, epoch) stored under ``"extra"``.

    Each file is written under a temporary name and renamed into place, the weights before the config, and an
    existing ``config.json`` is removed first: a save killed half-way leaves a folder without ``config.json``,
    which :func:`load_adapter` refuses, never a truncated file or new weights beside an old config.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in trainable_state_dict(model).items()}
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "spec": model.spec,
        "backbone_source": backbone_source or {"pretrained": False, "weights": None},
        "class_names": list(class_names) if class_names is not None else None,
        "preprocessing": preprocessing,
        "extra": extra or {},
    }
    if class_names is not None and len(class_names) != model.spec["task_config"].get("num_classes", len(class_names)):
        raise ValueError(f"{len(class_names)} class names for a model with "
                         f"{model.spec['task_config']['num_classes']} classes")
    text = json.dumps(config, indent=2, default=_json_default) + "\n"
    (directory / CONFIG_NAME).unlink(missing_ok=True)
    with replaced_atomically(directory / WEIGHTS_NAME) as temporary:
        save_file(state, str(temporary), metadata={"format": FORMAT})
    with replaced_atomically(directory / CONFIG_NAME) as temporary:
        temporary.write_text(text)
    return directory


def _json_default(value: Any) -> Any:
    if isinstance(value, (tuple, set)):
        return list(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    raise TypeError(f"cannot write {type(value).__name__} to config.json")


def read_adapter_config(directory: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of an adapter directory, checked for format, version and the keys
    that rebuild the model.

    Raises :class:`~avadapt.errors.CheckpointError` naming the folder or file: no such directory, no
    ``config.json``, a file that is not JSON, a config of another format, one written by a newer
    avadapt, or one without the keys of :data:`REQUIRED_KEYS` / :data:`REQUIRED_SPEC_KEYS`.
    """
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if not directory.is_dir():
        problem = "not found" if not directory.exists() else "not a directory"
        raise CheckpointError(f"{directory}: adapter directory {problem} (it holds {CONFIG_NAME} and {WEIGHTS_NAME})")
    if not path.is_file():
        raise CheckpointError(f"{path}: not found, so {directory} is not an adapter directory "
                              f"(it holds {CONFIG_NAME} and {WEIGHTS_NAME})")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}") from err
    except UnicodeDecodeError as err:
        raise CheckpointError(f"{path}: not a UTF-8 text file ({err.reason} at byte {err.start})") from err
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise CheckpointError(f"{path}: not an {FORMAT} config (format={found!r})")
    version = config.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: written in format version {version} by a newer avadapt; this one reads "
                              f"up to version {FORMAT_VERSION}: upgrade avadapt")
    spec = config.get("spec")
    missing = [key for key in REQUIRED_KEYS if key not in config]
    if isinstance(spec, dict):
        missing += [f"spec.{key}" for key in REQUIRED_SPEC_KEYS if key not in spec]
    if missing:
        raise CheckpointError(f"{path}: incomplete adapter config, missing {', '.join(missing)}")
    if not isinstance(version, int) or not isinstance(spec, dict):
        raise CheckpointError(f"{path}: format_version must be a whole number and spec an object, "
                              f"got {version!r} and {type(spec).__name__}")
    return config


def read_adapter_weights(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of an ``adapter.safetensors`` file; safetensors never runs code from the file.

    Raises :class:`~avadapt.errors.CheckpointError` naming the file when it is missing, truncated or
    not a safetensors file at all (a pickle, a torch ``.pt``).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: not found; an adapter directory holds {CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        return load_file(str(path), device=str(device))
    except SafetensorError as err:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated, corrupt or another format): "
                              f"{err}") from err


def _backbone_weights(config: dict[str, Any], weights: str | Path | None,
                      pretrained: bool | None) -> tuple[bool, Path | None]:
    """Decide where the backbone weights come from: the argument, the recorded file, the tag, or nowhere."""
    if weights is not None:
        return False, Path(weights)
    source = config.get("backbone_source") or {}
    if pretrained is not None:
        return pretrained, None
    recorded = source.get("weights")
    if recorded and Path(recorded).is_file():
        return False, Path(recorded)
    if source.get("pretrained"):
        return True, None
    return False, None


def load_adapter(
    directory: str | Path,
    weights: str | Path | None = None,
    *,
    pretrained: bool | None = None,
    audio_weights: str | Path | None = None,
    map_location: str | torch.device = "cpu",
) -> AVModel:
    """Rebuild the model of an adapter directory and load its trainable state (strict).

    Backbone weights come from, in this order: ``weights=PATH``; the file the model was trained with when
    it still exists; the backbone's timm tag when training used ``pretrained`` (or ``pretrained=True``
    here); otherwise the backbone is random and a :class:`RandomBackboneWarning` says so loudly.
    A separate audio encoder's weights (DG-SCT) come from ``audio_weights=PATH``, else the file recorded as
    ``backbone_source["audio_weights"]`` when it still exists; otherwise it is random, with the same warning.
    The model is returned in eval mode; ``model.adapter_config`` holds the parsed config.json.
    A missing or damaged directory, config or weights file raises :class:`~avadapt.errors.CheckpointError`
    naming the file (see :func:`read_adapter_config` and :func:`read_adapter_weights`).
    """
    directory = Path(directory)
    config = read_adapter_config(directory)
    use_tag, weights_path = _backbone_weights(config, weights, pretrained)
    if not use_tag and weights_path is None:
        warnings.warn(
            f"{directory}: no backbone weights given or found (pass weights=PATH or pretrained=True); "
            f"the backbone {config['spec']['backbone']!r} is RANDOMLY INITIALISED, so the adapter sits on a "
            "backbone it was not trained with and its predictions are meaningless",
            RandomBackboneWarning, stacklevel=2)
    if "audio_backbone" in config["spec"] and audio_weights is None:
        recorded = (config.get("backbone_source") or {}).get("audio_weights")
        audio_weights = recorded if recorded and Path(recorded).is_file() else None
        if audio_weights is None:
            warnings.warn(
                f"{directory}: no audio encoder weights given or found (pass audio_weights=PATH); the audio "
                f"encoder {config['spec']['audio_backbone']!r} is RANDOMLY INITIALISED", RandomBackboneWarning,
                stacklevel=2)
    state = read_adapter_weights(directory / WEIGHTS_NAME, map_location)  # before the model: fail fast
    model = build_from_config(config, pretrained=use_tag, weights=weights_path, audio_weights=audio_weights)
    load_trainable_state(model, state, str(directory / WEIGHTS_NAME))
    model.adapter_config = config
    return model.to(map_location).eval()


def _as_timm_options(options: dict[str, Any]) -> dict[str, Any]:
    """JSON turned tuples (img_size=(H, W), depths) into lists; timm wants them back as tuples."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}


def build_from_config(config: dict[str, Any], pretrained: bool = False,
                      weights: str | Path | None = None, audio_weights: str | Path | None = None) -> AVModel:
    """``create_model`` with the options an adapter config records (a separate audio encoder included)."""
    spec = config["spec"]
    options = _as_timm_options(spec.get("backbone_options", {}))
    audio = AudioEmbeddingConfig(**spec["audio_embedding"])
    separate = {}
    if "audio_backbone" in spec:
        audio_options = {**_as_timm_options(spec.get("audio_backbone_options", {})), "audio": audio}
        separate = {"audio_backbone": spec["audio_backbone"], "audio_weights": audio_weights,
                    "audio_backbone_options": audio_options}
    else:
        options["audio"] = audio
    model = create_model(
        backbone=spec["backbone"], method=spec["method"], task=spec["task"], pretrained=pretrained,
        weights=weights, backbone_options=options, **separate, **spec["method_config"], **spec["task_config"],
    )
    return model

"""Adapter-only checkpoints: ``config.json`` (what rebuilds the model) + ``adapter.safetensors`` (its weights).

The PEFT habit: a trained model is the frozen backbone, which everyone already has, plus megabytes of
adapters and head. Saving writes only the latter, with the model's ``spec`` and the preprocessing that
produced its inputs; loading rebuilds the model from the spec, obtains backbone weights from a file or
the timm tag, and then insists that the file holds exactly the trainable state — any missing or
unexpected key is an error naming the keys, never a silent ``strict=False``.

An adapter only means something on the backbone weights it was trained with, so the config records each
weights file by its absolute path and the sha256 of its bytes. Loading uses the recorded file; another file
is accepted only when its bytes are the same, or when the caller says a different backbone is intended
(``weights_mismatch="ok"``); a moved, deleted or replaced file stops the load with an error naming it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from avadapt._files import replaced_atomically
from avadapt.backbones import AudioEmbeddingConfig
from avadapt.errors import CheckpointError, OptionError
from avadapt.models import AVModel, create_model

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "adapter.safetensors"
FORMAT = "avadapt-adapter"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "format_version", "spec")
REQUIRED_SPEC_KEYS = ("backbone", "method", "task", "method_config", "task_config", "audio_embedding")
WEIGHTS_KEYS = ("weights", "audio_weights")  # the files of backbone_source, each recorded with "<key>_sha256"
WEIGHTS_MISMATCH = ("refuse", "ok")


class AdapterMismatchError(CheckpointError):
    """An adapter file whose keys or shapes do not match the model its config rebuilds."""


class BackboneFileError(CheckpointError):
    """The backbone weights file an adapter records is missing, or a file that is not the one it was trained with."""


class RandomBackboneWarning(UserWarning):
    """The backbone was rebuilt with random weights: predictions mean nothing for real data."""


class BackboneMismatchWarning(UserWarning):
    """The backbone weights differ from those the adapter was trained with, as the caller allowed."""


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes as hex, read in chunks (``hashlib.file_digest``). Remembered for the same file
    (path, inode, size and modification time) within a process, so that loading an adapter right after training
    it, or once per video, reads a large backbone file once."""
    path = Path(path).resolve()
    stat = path.stat()
    return _sha256_of(str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=16)
def _sha256_of(path: str, inode: int, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _frozen_modules(model: nn.Module) -> list[str]:
    """Names (with a trailing dot) of modules that own parameters, none of them trainable; every name of a module
    held in two places (a frozen encoder that a method also holds), so its buffers count as frozen under each."""
    frozen = []
    for name, module in model.named_modules(remove_duplicate=False):
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
    "fbank": FbankConfig.to_dict()}``; default: what the model records (``create_model`` sets it).
    backbone_source: how the backbone weights were obtained in training (``{"pretrained": bool,
    "weights": path or None}``, plus ``"audio_weights"`` for a separate audio encoder); default: what the model
    records. Each file is written as its absolute path with the sha256 of its bytes (``"weights_sha256"``), so
    :func:`load_adapter` finds it again from any folder and can tell it from another file.
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
        "backbone_source": _recorded_source(backbone_source or model.backbone_source),
        "class_names": list(class_names) if class_names is not None else None,
        "preprocessing": preprocessing if preprocessing is not None else model.preprocessing,
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


def _recorded_source(source: dict[str, Any]) -> dict[str, Any]:
    """``backbone_source`` as config.json keeps it: each weights file as an absolute path with its sha256."""
    recorded = {k: v for k, v in source.items() if not k.endswith("_sha256")}
    for key in WEIGHTS_KEYS:
        if recorded.get(key) is None:
            continue
        path = Path(os.path.abspath(Path(recorded[key]).expanduser()))  # symbolic links kept as named
        recorded[key] = str(path)
        if path.is_file():
            recorded[f"{key}_sha256"] = file_sha256(path)
        else:
            warnings.warn(f"{path}: the {key} file is gone, so the adapter records its path without a content hash",
                          stacklevel=3)
    return recorded


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


def _weights_file(directory: Path, source: dict[str, Any], key: str, given: str | Path | None,
                  weights_mismatch: str) -> Path | None:
    """The ``key`` file ("weights" | "audio_weights") to build with: ``given``, else the recorded one, checked
    against the sha256 the adapter recorded; None when neither names a file (or an adapter written without
    hashes records a file that is gone). A missing file, or one with other bytes unless ``weights_mismatch`` is
    "ok", raises :class:`BackboneFileError`."""
    recorded, digest = source.get(key), source.get(f"{key}_sha256")
    option = "--weights PATH" if key == "weights" else "--audio-weights PATH"
    what = "backbone weights" if key == "weights" else "audio encoder weights"
    if given is None and recorded is None:
        return None
    path = Path(given if given is not None else recorded)
    if not path.is_file():
        if given is not None:
            raise BackboneFileError(f"{path}: {what} file not found")
        if digest is None:  # an adapter written before hashes were recorded: loaded as it always was
            return None
        raise BackboneFileError(f"{path}: {what} file recorded by the adapter {directory} not found (moved or "
                                f"deleted); give its new place with {option} (its sha256 must be {digest})")
    if digest is None:
        return path
    found = file_sha256(path)
    if found == digest:
        return path
    trained_on = f"the {what} {directory} was trained with" + (f" ({recorded})" if given is not None else "")
    if weights_mismatch == "ok":
        warnings.warn(f"{path}: not {trained_on} (sha256 {found[:16]}… instead of {digest[:16]}…); used as asked, "
                      "so predictions may be wrong", BackboneMismatchWarning, stacklevel=3)
        return path
    changed = "is another file than" if given is not None else "has changed since it was"
    raise BackboneFileError(f"{path}: {changed} {trained_on} (sha256 {found[:16]}… instead of {digest[:16]}…); "
                            f"give that file with {option}, or use this one anyway with --weights-mismatch ok "
                            "(weights_mismatch='ok')")


def _backbone_weights(directory: Path, config: dict[str, Any], weights: str | Path | None,
                      pretrained: bool | None, weights_mismatch: str) -> tuple[bool, Path | None]:
    """Decide where the backbone weights come from: the argument, the tag when asked, the recorded file, the tag
    the adapter was trained with, or nowhere."""
    source = config.get("backbone_source") or {}
    if weights is None and pretrained is not None:
        return pretrained, None
    path = _weights_file(directory, source, "weights", weights, weights_mismatch)
    if path is not None:
        return False, path
    return bool(source.get("pretrained")), None


def load_adapter(
    directory: str | Path,
    weights: str | Path | None = None,
    *,
    pretrained: bool | None = None,
    audio_weights: str | Path | None = None,
    weights_mismatch: str = "refuse",
    map_location: str | torch.device = "cpu",
) -> AVModel:
    """Rebuild the model of an adapter directory and load its trainable state (strict).

    Backbone weights come from, in this order: ``weights=PATH``; the timm tag with ``pretrained=True`` (random
    with ``pretrained=False``); the file the model was trained with, recorded by absolute path; the backbone's
    timm tag when training used ``pretrained``; otherwise the backbone is random and a
    :class:`RandomBackboneWarning` says so loudly. A separate audio encoder's weights (DG-SCT) come from
    ``audio_weights=PATH``, else the recorded ``backbone_source["audio_weights"]``; otherwise it is random,
    with the same warning.

    Where the adapter recorded a file's sha256, a file given here must have the same bytes and the recorded file
    must still be there unchanged, else :class:`BackboneFileError` names the file and what to do;
    ``weights_mismatch="ok"`` accepts a file with other bytes (with a :class:`BackboneMismatchWarning`).
    Adapters written without hashes use a given file as it is and a recorded one when it still exists.

    The model is returned in eval mode; ``model.adapter_config`` holds the parsed config.json. An adapter that
    records no preprocessing gets the model's default (``create_model``), with a warning.
    A missing or damaged directory, config or weights file raises :class:`~avadapt.errors.CheckpointError`
    naming the file (see :func:`read_adapter_config` and :func:`read_adapter_weights`).
    """
    if weights_mismatch not in WEIGHTS_MISMATCH:
        raise OptionError(f"weights_mismatch must be one of {', '.join(WEIGHTS_MISMATCH)}, got {weights_mismatch!r}")
    directory = Path(directory)
    config = read_adapter_config(directory)
    use_tag, weights_path = _backbone_weights(directory, config, weights, pretrained, weights_mismatch)
    if not use_tag and weights_path is None:
        warnings.warn(
            f"{directory}: no backbone weights given or found (pass weights=PATH or pretrained=True); "
            f"the backbone {config['spec']['backbone']!r} is RANDOMLY INITIALISED, so the adapter sits on a "
            "backbone it was not trained with and its predictions are meaningless",
            RandomBackboneWarning, stacklevel=2)
    if "audio_backbone" in config["spec"]:
        audio_weights = _weights_file(directory, config.get("backbone_source") or {}, "audio_weights",
                                      audio_weights, weights_mismatch)
        if audio_weights is None:
            warnings.warn(
                f"{directory}: no audio encoder weights given or found (pass --audio-weights PATH, or "
                f"audio_weights=PATH in Python); the audio encoder {config['spec']['audio_backbone']!r} is RANDOMLY "
                f"INITIALISED", RandomBackboneWarning, stacklevel=2)
    state = read_adapter_weights(directory / WEIGHTS_NAME, map_location)  # before the model: fail fast
    model = build_from_config(config, pretrained=use_tag, weights=weights_path, audio_weights=audio_weights)
    load_trainable_state(model, state, str(directory / WEIGHTS_NAME))
    if config.get("preprocessing"):
        model.preprocessing = config["preprocessing"]
    else:
        warnings.warn(f"{directory / CONFIG_NAME}: records no preprocessing; inputs are made as create_model's "
                      f"default for this model ({model.preprocessing['audio_front_end']!r} audio front end, the "
                      "backbone's data config)", stacklevel=2)
        config["preprocessing"] = model.preprocessing
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

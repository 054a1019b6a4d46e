"""CLAP's audio and text towers, frozen, read from laion_clap's released checkpoint without laion_clap.

The released files (``630k-audioset-fusion-best.pt`` and its siblings, LAION-AI/CLAP) are a torch dict
``{"state_dict": {"module.<key>": tensor}, "epoch": …, …}``. Their keys (laion_clap's ``clap_module/model.py``):
``audio_branch.*`` HTS-AT (``clap_module/htsat.py``; fusion checkpoints add ``patch_embed.mel_conv2d.*`` and
``patch_embed.fusion_model.*``, which only clips longer than 10 s use, so they are dropped here);
``audio_projection.{0,2}.*`` and ``text_projection.{0,2}.*``, each ``Linear → ReLU → Linear``;
``text_branch.*`` a ``transformers.RobertaModel`` (roberta-base; ``embeddings.position_ids`` is a buffer newer
transformers rebuild); ``audio_transform.*`` / ``text_transform.*``, MLPs used only by its training loss
(dropped); ``logit_scale_a`` / ``logit_scale_t``, log temperatures.

Audio: laion_clap's HTS-AT ``forward_features`` applies ``self.norm`` to the last stage's tokens, regroups them
(a permutation) and takes ``avgpool`` over all of them as ``latent_output`` ("embedding"); CLAP then applies
``audio_projection``. So a segment's vector is the mean over tokens after HTS-AT's final LayerNorm, projected
(:meth:`CLAPTowers.pool`); DG-SCT (few-shot/nets/net_trans.py) computes the same. Text: laion_clap's
``CLAP.encode_text`` for RoBERTa is ``text_projection(text_branch(input_ids, attention_mask).pooler_output)``,
tokens from ``RobertaTokenizer`` with ``padding="max_length", truncation=True, max_length=77``
(laion_clap's ``hook.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avadapt._config import JSONConfig
from avadapt.backbones import HTSAT_PRESETS, HTSATBackbone, create_htsat, load_htsat_state_dict
from avadapt.checkpoint_files import read_state_dict, state_mismatch
from avadapt.errors import CheckpointError, OptionError
from avadapt.text._optional import import_optional

# roberta-base's configuration (its config.json on the Hugging Face hub), the text tower of every released CLAP.
ROBERTA_BASE: dict[str, Any] = {
    "vocab_size": 50265, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
    "intermediate_size": 3072, "hidden_act": "gelu", "max_position_embeddings": 514, "type_vocab_size": 1,
    "layer_norm_eps": 1e-5, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
}
# A RoBERTa for CPU tests: the byte-level vocabulary of :func:`write_byte_level_tokenizer` (5 specials + 256 bytes)
# and positions for 77 tokens after RoBERTa's offset (positions start at pad_token_id + 1). Drawn at std 0.5
# instead of RoBERTa's 0.02: at 0.02 a random RoBERTa's pooled output is the same vector for every text (cosine
# 1.000 between different class names), at 0.5 names differ (mean cosine about 0.8), so a demo's audio classifier
# has something to tell apart.
TINY_ROBERTA: dict[str, Any] = {
    **ROBERTA_BASE, "vocab_size": 261, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
    "intermediate_size": 64, "max_position_embeddings": 79, "initializer_range": 0.5,
}
# The byte-level tokenizer's specials, at roberta-base's ids.
_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
_MASK = "<mask>"


@dataclass(frozen=True)
class CLAPArchitecture(JSONConfig):
    """The shape of a CLAP model: its HTS-AT (an ``avadapt.backbones.HTSAT_PRESETS`` entry), its RoBERTa
    (``transformers.RobertaConfig`` values), the joint embedding width and the tokenizer's length."""

    htsat_preset: str
    roberta: dict[str, Any] = field(default_factory=lambda: dict(ROBERTA_BASE))
    embed_dim: int = 512
    max_text_length: int = 77

    def __post_init__(self) -> None:
        if self.htsat_preset not in HTSAT_PRESETS:
            raise OptionError(f"unknown HTS-AT preset {self.htsat_preset!r}; known: {', '.join(HTSAT_PRESETS)}")
        if self.roberta["max_position_embeddings"] < self.max_text_length + self.roberta["pad_token_id"] + 1:
            raise OptionError(f"RoBERTa positions ({self.roberta['max_position_embeddings']}) do not reach "
                              f"{self.max_text_length} tokens")


CLAP_MODELS: dict[str, CLAPArchitecture] = {
    # laion_clap's HTSAT-tiny + roberta (model_configs/HTSAT-tiny.json: HTS-AT's AudioSet shape, Swin 96 wide,
    # depths 2/2/6/2, heads 4/8/16/32, window 8, 64 mel, spec 256; joint width 512): the released checkpoints.
    "HTSAT-tiny": CLAPArchitecture(htsat_preset="audioset"),
    # random tiny CLAP for tests and demos: HTS-AT's 16-wide preset, a 32-wide RoBERTa, 32-wide joint space
    "tiny": CLAPArchitecture(htsat_preset="tiny", roberta=dict(TINY_ROBERTA), embed_dim=32),
}

# CLAP checkpoint keys that are not part of the frozen towers.
_FUSION_ONLY = ("audio_branch.patch_embed.mel_conv2d.", "audio_branch.patch_embed.fusion_model.")
_TRAINING_ONLY = ("audio_transform.", "text_transform.")
# Buffers transformers rebuilds and no longer saves.
_ROBERTA_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet (which RoBERTa's BPE uses): printable Latin-1 bytes stand for themselves, the
    other bytes for the characters from U+0100 on, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    mapping = {b: chr(b) for b in printable}
    mapping.update({b: chr(256 + i) for i, b in enumerate(others)})
    return mapping


def write_byte_level_tokenizer(folder: Path) -> Path:
    """A RoBERTa tokenizer with no merges (every byte one token) in roberta-base's file layout: ``vocab.json``
    (``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3, the 256 byte characters, ``<mask>`` 260) and
    ``merges.txt`` (only its version header). It encodes any text, for :data:`TINY_ROBERTA`."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {token: i for i, token in enumerate(_SPECIALS)}
    for byte, char in sorted(bytes_to_unicode().items()):
        vocab[char] = len(vocab)
    vocab[_MASK] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return folder


def load_roberta_tokenizer(folder: str | Path | None):
    """``transformers.RobertaTokenizer`` from a folder holding roberta-base's ``vocab.json`` and ``merges.txt``
    (read locally; nothing is downloaded)."""
    if folder is None:
        raise OptionError("clap_tokenizer is not set: CLAP's text tower needs a folder with roberta-base's "
                          "vocab.json and merges.txt")
    folder = Path(folder)
    missing = [name for name in ("vocab.json", "merges.txt") if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(f"{folder}: CLAP tokenizer folder lacks {' and '.join(missing)} "
                              "(roberta-base's vocab.json and merges.txt)")
    transformers = import_optional("transformers")
    return transformers.RobertaTokenizer.from_pretrained(str(folder), local_files_only=True)


def projection(width: int, embed_dim: int) -> nn.Sequential:
    """CLAP's ``audio_projection`` / ``text_projection``: Linear(width, E) → ReLU → Linear(E, E)."""
    return nn.Sequential(nn.Linear(width, embed_dim), nn.ReLU(), nn.Linear(embed_dim, embed_dim))


def _load_part(module: nn.Module, state: dict[str, torch.Tensor], source: Path, part: str) -> None:
    """Load ``state`` into ``module`` with every key and shape matching, else one CheckpointError line."""
    def named(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {f"{part}.{key}": value for key, value in tensors.items()}  # as the file names them

    problem = state_mismatch(named(module.state_dict()), named(state), show=6)
    if problem is not None:
        raise CheckpointError(f"{source} does not match CLAP's {part}: {problem}")
    module.load_state_dict(state, strict=True)


class CLAPTowers(nn.Module):
    """CLAP's audio and text towers, frozen (``requires_grad=False``, eval mode whatever ``.train()`` says).

    ``audio``: avadapt's HTS-AT (a timm Swin) holding CLAP's ``audio_branch``; DG-SCT adapts its stages.
    ``front_end``: the ``avadapt.audio_front_ends`` entry whose log-mel it reads (48 kHz, 64 × 1001).
    """

    front_end: str = "clap"

    def __init__(self, audio: HTSATBackbone, audio_projection: nn.Sequential, text_branch: nn.Module,
                 text_projection: nn.Sequential, tokenizer, logit_scale: torch.Tensor, max_text_length: int = 77):
        super().__init__()
        self.audio = audio
        self.audio_projection = audio_projection
        self.embed_dim: int = audio_projection[-1].out_features
        self.text_branch = text_branch
        self.text_projection = text_projection
        self.tokenizer = tokenizer
        self.max_text_length = max_text_length
        self.register_buffer("logit_scale", logit_scale.detach().clone())
        self.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> CLAPTowers:
        """Frozen towers stay in eval mode."""
        return super().train(False)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """(S, N, C) last-stage tokens before HTS-AT's final norm → (S, E_a): final LayerNorm, mean over
        tokens, ``audio_projection`` (laion_clap's ``latent_output`` → ``audio_projection``)."""
        return self.audio_projection(self.audio.final_norm(tokens).mean(dim=1))

    def audio_features(self, spectrograms: torch.Tensor) -> torch.Tensor:
        """(S, 1, F, L) log-mel segments of the ``clap`` front end → (S, E_a), unnormalised: the frozen path."""
        image = self.audio.spectrogram_image(spectrograms)  # (S, 1, spec, spec)
        grid = self.audio.model.layers(self.audio.model.patch_embed(image))  # (S, h, w, C)
        return self.pool(grid.flatten(1, 2))  # (S, h·w, C) → (S, E_a)

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(n,) texts → (n, 77) input ids and attention mask, padded and truncated as laion_clap's tokenizer."""
        encoded = self.tokenizer(list(texts), padding="max_length", truncation=True,
                                 max_length=self.max_text_length, return_tensors="pt")
        device = self.text_projection[0].weight.device
        return encoded["input_ids"].to(device), encoded["attention_mask"].to(device)

    def text_features(self, texts: list[str]) -> torch.Tensor:
        """(n,) texts → (n, E_a) unnormalised: ``text_projection`` of RoBERTa's ``pooler_output``."""
        input_ids, attention_mask = self.tokenize(texts)
        pooled = self.text_branch(input_ids=input_ids, attention_mask=attention_mask).pooler_output  # (n, W)
        return self.text_projection(pooled)


def build_clap_towers(model_name: str, weights: str | Path | None, tokenizer: str | Path | None,
                      audio_size: dict[str, int] | None = None) -> CLAPTowers:
    """CLAP's towers of shape ``CLAP_MODELS[model_name]``, weights from a checkpoint in laion_clap's released
    format (None: random), the tokenizer from a folder with RoBERTa's ``vocab.json`` + ``merges.txt``.
    audio_size: the log-mel HTS-AT reads, ``num_mel_bins`` and ``num_frames`` (default: CLAP's 64 × 1001); a
    smaller one for a tiny encoder on a CPU (no weight depends on it but ``bn0``'s, one per mel bin).

    Every tower weight must be in the file with its shape, and every key of the file must have a place
    (fusion-only and training-only keys are dropped by name), else one CheckpointError line naming the file.
    """
    if model_name not in CLAP_MODELS:
        raise OptionError(f"unknown CLAP model {model_name!r}; known: {', '.join(CLAP_MODELS)}")
    architecture = CLAP_MODELS[model_name]
    transformers = import_optional("transformers")
    text_tokenizer = load_roberta_tokenizer(tokenizer)
    audio = create_htsat(architecture.htsat_preset, **(audio_size or {}))
    audio_projection = projection(audio.embed_dim, architecture.embed_dim)
    text_branch = transformers.RobertaModel(transformers.RobertaConfig(**architecture.roberta),
                                            add_pooling_layer=True).eval()
    text_projection = projection(architecture.roberta["hidden_size"], architecture.embed_dim)
    logit_scale = torch.tensor(1 / 0.07).log()
    if weights is not None:
        path = Path(weights)
        state = read_state_dict(path, "CLAP checkpoint")  # unwraps "state_dict", removes "module."
        parts: dict[str, dict[str, torch.Tensor]] = {"audio_branch": {}, "audio_projection": {}, "text_branch": {},
                                                     "text_projection": {}}
        unexpected = []
        for key, value in state.items():
            part, _, rest = key.partition(".")
            if key.startswith(_FUSION_ONLY + _TRAINING_ONLY) or key == "logit_scale_t":
                continue
            if part == "text_branch" and rest in _ROBERTA_BUFFERS and rest not in text_branch.state_dict():
                continue
            if part in parts:
                parts[part][key if part == "audio_branch" else rest] = value
            elif key != "logit_scale_a":
                unexpected.append(key)
        if unexpected or "logit_scale_a" not in state:
            raise CheckpointError(f"{path} is not a CLAP checkpoint in laion_clap's layout: "
                                  f"unexpected keys {sorted(unexpected)[:8]}, logit_scale_a "
                                  f"{'present' if 'logit_scale_a' in state else 'missing'}")
        load_htsat_state_dict(audio, parts["audio_branch"], path, prefix="audio_branch.")
        _load_part(audio_projection, parts["audio_projection"], path, "audio_projection")
        _load_part(text_branch, parts["text_branch"], path, "text_branch")
        _load_part(text_projection, parts["text_projection"], path, "text_projection")
        logit_scale = state["logit_scale_a"].reshape(())
    return CLAPTowers(audio, audio_projection, text_branch, text_projection, text_tokenizer, logit_scale,
                      architecture.max_text_length)

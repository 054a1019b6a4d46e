"""Trainable-parameter counts of the full-size presets, built on the meta device (no weights, no memory).

Targets: the official codes' counts with the AVE head (shared/reference/methods.md), and the AV-STFP poster.
The exact integers are the analytic derivations written in the methods' docstrings.
"""

from __future__ import annotations

import dataclasses

import pytest

from avadapt import cli
from avadapt._registry import METHODS
from avadapt.audio_front_ends import AUDIO_FRONT_ENDS, audio_front_end
from avadapt.backbones import AudioEmbeddingConfig
from avadapt.models import audio_embedding, build_without_weights, paper_audio_front_end, parameter_report
from avadapt.param_table import (
    CLIP_B16,
    CLIP_L14,
    PRESET_ROWS,
    SWIN_B,
    SWIN_L,
    SWINV2_L,
    PresetRow,
    format_table,
    parameter_table,
)


def trainable(backbone: str, method: str, **options) -> int:
    report = parameter_report(build_without_weights(backbone=backbone, method=method, task="ave", **options))
    assert report["trainable"] == sum(report["breakdown"].values())
    return report["trainable"]


@pytest.mark.parametrize("backbone,preset,paper,tolerance,official", [
    (SWIN_L, "base", 19.03e6, 0.01e6, 19_026_809),
    (SWIN_L, "tiny", 11.74e6, 0.01e6, 11_740_649),
    (SWIN_B, "base", 10.07e6, 0.01e6, 10_068_549),
    (SWIN_B, "tiny", 5.6e6, 0.05e6, 5_599_909),
])
def test_stg_cma_swin_counts_match_the_official_code(backbone, preset, paper, tolerance, official):
    # The official module set: no CAIM gates (the AVE script runs "multimodal"), frozen final norm.
    assert trainable(backbone, "stg_cma", preset=preset, fusion="none", tune_final_norm=False) == official
    # Our defaults add 48 CAIM gates and a trainable copy of the final norm: still the paper's figure.
    assert abs(trainable(backbone, "stg_cma", preset=preset) - paper) <= tolerance


def test_stg_cma_swin_explicit_ratio_overrides_the_stage_presets():
    uniform = trainable(SWIN_B, "stg_cma", ratio="1/8", fusion="none", tune_final_norm=False)
    assert uniform != trainable(SWIN_B, "stg_cma", preset="base", fusion="none", tune_final_norm=False)
    with pytest.raises(ValueError, match="presets"):
        build_without_weights(backbone=SWIN_B, method="stg_cma", task="ave", preset="vanilla")


def test_lavish_count_matches_the_official_code():
    assert trainable(SWINV2_L, "lavish", preset="ave") == 10_036_061  # adapters 8,447,808 + head 1,588,253
    assert abs(trainable(SWINV2_L, "lavish", preset="ave", dropout=0.0) - 10.04e6) <= 0.01e6


@pytest.mark.parametrize("backbone,exact,poster", [(CLIP_B16, 1_077_605, 1.1e6), (CLIP_L14, 1_801_469, 1.8e6)])
def test_av_stfp_lands_near_the_poster(backbone, exact, poster):
    count = trainable(backbone, "av_stfp")
    assert count == exact
    assert round(count / 1e6, 1) == round(poster / 1e6, 1)


def test_probe_trains_only_the_head_unless_fully_fine_tuned():
    frozen = parameter_report(build_without_weights(backbone=SWIN_L, method="probe", task="ave"))
    assert frozen["trainable"] == 1_588_253 and frozen["breakdown"] == {"head": 1_588_253}
    full = parameter_report(build_without_weights(backbone=SWIN_L, method="probe", task="ave",
                                                  full_finetune=True))
    assert full["trainable"] == full["total"]


def test_every_registered_method_has_a_preset_row_and_the_table_formats():
    assert {row.method for row in PRESET_ROWS} == set(METHODS.names())
    rows = [PresetRow("stg_cma", CLIP_B16, "tiny (1/32)", {"preset": "tiny"}, task="ave",
                      paper="3.53M (code)"),
            PresetRow("lavish", SWINV2_L, "AVE preset", {"preset": "ave"}, task="ave", paper="10.04M (code)")]
    entries = parameter_table(rows)
    assert [e["trainable"] for e in entries] == [3_529_973, 10_036_061]
    text, markdown = format_table(entries), format_table(entries, markdown=True)
    assert "3.53M" in text and "10.04M" in text and "CLIP ViT-B/16" in text
    lines = markdown.splitlines()
    assert lines[0].startswith("| method |") and lines[1].startswith("|---") and len(lines) == 4


def test_params_table_command_prints_the_table(monkeypatch, capsys):
    subset = [PresetRow("probe", SWIN_B, "frozen backbone", task="ave")]
    monkeypatch.setattr("avadapt.param_table.parameter_table", lambda rows=subset: parameter_table(rows))
    cli.main(["params", "--table", "--markdown"])
    out = capsys.readouterr().out
    assert "| probe | Swin-B/224 (22k) | ave | frozen backbone | 1.06M | 87.81M | — |" in out


def test_methods_pick_their_audio_entrance_on_swin_unless_told_otherwise():
    def audio(method: str, **backbone_options) -> AudioEmbeddingConfig:
        model = build_without_weights(backbone=SWINV2_L, method=method, task="ave",
                                      backbone_options=backbone_options)
        return model.backbone.audio

    lavish = AudioEmbeddingConfig(num_mel_bins=192, num_frames=192, kernel_reduction="sum", pos_embed="crop")
    assert audio("lavish") == lavish  # RGB kernel summed: the spectrogram tiled to three channels
    assert audio("stg_cma").kernel_reduction == "mean"
    explicit = dataclasses.replace(lavish, kernel_reduction="mean")
    assert audio("lavish", audio=explicit) == explicit
    stg = build_without_weights(backbone=SWIN_L, task="ave", method="stg_cma").backbone.audio
    assert stg == AudioEmbeddingConfig(num_mel_bins=224, num_frames=224, kernel_reduction="mean", pos_embed="crop")
    # the paper's named front ends give the same embeddings
    assert audio_embedding(paper_audio_front_end("lavish", "swin", "ave")) == lavish
    assert audio_embedding(paper_audio_front_end("stg_cma", "swin", "ave")) == stg


@pytest.mark.parametrize("backbone,method,task", [(CLIP_B16, "stg_cma", "ave"), (CLIP_L14, "lavish", "ave"),
                                                  (SWIN_L, "stg_cma", "ave"), (SWINV2_L, "lavish", "ave")])
def test_create_model_builds_the_paper_front_ends_audio_embedding(backbone, method, task):
    name = paper_audio_front_end(method, "swin" if "swin" in backbone else "vit", task)
    model = build_without_weights(backbone=backbone, method=method, task=task, audio_front_end=name)
    fbank = audio_front_end(name).fbank
    assert (model.backbone.audio.num_mel_bins, model.backbone.audio.num_frames) == (
        fbank.num_mel_bins, fbank.target_frames)
    assert model.backbone.audio == build_without_weights(backbone=backbone, method=method, task=task).backbone.audio


def test_audio_front_ends_hold_the_loaders_settings():
    for name, front_end in AUDIO_FRONT_ENDS.items():
        assert front_end.name == name and front_end.source
    # values from shared/reference/methods.md, written out here
    vit = audio_front_end("vit").fbank
    assert (vit.num_mel_bins, vit.frame_shift_ms, vit.target_frames) == (128, 10.0, 102)
    assert (vit.mean, vit.std) == (-4.1426, 3.2001)
    lavish = audio_front_end(paper_audio_front_end("lavish", "swin", "ave")).fbank
    assert (lavish.frame_shift_ms, lavish.mean, lavish.std) == (5.2, -4.9848, 3.7080)
    stg = audio_front_end(paper_audio_front_end("stg_cma", "swin", "ave")).fbank
    assert (stg.num_mel_bins, stg.frame_shift_ms, stg.target_frames) == (224, 4.4, 224)
    assert (stg.mean, stg.std) == (-4.1426, 3.2001)  # the AVE script keeps the 128-mel statistics
    avqa = audio_front_end(paper_audio_front_end("lavish", "swin", "avqa")).fbank
    assert (avqa.frame_shift_ms, avqa.window_seconds, avqa.mean, avqa.std) == (10.0, 1.95, -5.3853, 3.5929)


def test_dg_sct_avs_and_avqa_presets_build_what_their_reference_code_trains():
    """The S4 and MS3 code builds a LayerNorm before each bottleneck that its AVS adapter never calls, and no
    output gate on its audio adapters; the AVQA code has no audio gates either. Against the same presets in the
    AVE layout: 2·D per adapter (weight and bias of D) over the 48 adapters of the 12 paired blocks, plus 24
    audio gates."""
    from avadapt.param_table import build_as_published

    def count(preset: str, task: str, **options) -> int:
        return parameter_report(build_as_published(SWINV2_L, "dg_sct", task, preset=preset, **options))["trainable"]

    visual_widths = 2 * 192 + 2 * 384 + 6 * 768 + 2 * 1536  # the 12 paired Swin-V2-L blocks
    audio_widths = 2 * 96 + 2 * 192 + 6 * 384 + 2 * 768  # their HTS-AT partners
    first_norms = 2 * 2 * (visual_widths + audio_widths)  # p1 and p2 adapters, weight and bias
    assert first_norms == 52_992
    ave_layout = {"norm_before": True, "gate_before_norm": False, "audio_gate": True}
    counts = {preset: count(preset, task) for preset, task in (("s4", "avs"), ("ms3", "avs"), ("avqa", "avqa"))}
    for preset in ("s4", "ms3"):
        assert count(preset, "avs", **ave_layout) - counts[preset] == first_norms + 24
    assert count("avqa", "avqa", audio_gate=True) - counts["avqa"] == 24
    assert counts == {"s4": 128_340_409, "ms3": 217_583_881, "avqa": 253_206_900}

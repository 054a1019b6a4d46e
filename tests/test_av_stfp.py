"""AV-STFP's temporal key–value prompts, checked against timm's own block modules on a tiny random ViT."""

from __future__ import annotations

import pytest
import torch

from tests.zoo import BATCH, FRAMES, build, inputs

pytestmark = pytest.mark.usefixtures("one_thread")


def _reference_block(block: torch.nn.Module, x: torch.Tensor, timeline: torch.Tensor) -> torch.Tensor:
    """timm's block with its keys/values widened by ``timeline`` (B·T, T, D): attention over [x; timeline],
    the timeline's own outputs dropped, then the block's MLP, both with their residual adds."""
    length = x.shape[1]
    attended = block.ls1(block.attn(block.norm1(torch.cat([x, timeline], dim=1))))[:, :length]
    x = x + attended
    return x + block.ls2(block.mlp(block.norm2(x)))


@pytest.mark.parametrize("timeline", ["differences", "class_tokens"])
def test_temporal_prompts_widen_keys_and_values_with_the_clips_timeline(timeline):
    model = build("vit", "av_stfp", spatial_prompts=False, fusion_prompts=False, timeline=timeline).eval()
    method = model.method
    codes = method.layers[0].time_codes["video"]
    with torch.no_grad():
        codes.normal_(0, 0.1)
    video, audio = inputs(model)
    tokens = {m: method.backbone.pre_norm(x) for m, x in method.embed(video, audio).items()}
    x = tokens["video"]  # (B*T, 1 + N, D)
    # the class tokens must differ between segments for the two timelines to differ
    x = x + torch.randn(x.shape[0], 1, x.shape[-1], generator=torch.Generator().manual_seed(1))
    classes = x[:, 0].view(BATCH, FRAMES, -1)  # (B, T, D)
    rows = []
    for b in range(BATCH):
        for t in range(FRAMES):
            relative_to = classes[b, t] if timeline == "differences" else torch.zeros_like(classes[b, t])
            rows.append(torch.stack([classes[b, tau] - relative_to + codes[tau] for tau in range(FRAMES)]))
    expected = _reference_block(method.backbone.model.blocks[0], x, torch.stack(rows))
    with torch.no_grad():
        ours, _ = method._layer(method.backbone.blocks[0], method.layers[0], "video", x, None)
    torch.testing.assert_close(ours, expected.detach(), rtol=1e-5, atol=1e-5)


def test_timeline_option_validates():
    from avadapt.methods.av_stfp import AVSTFPConfig

    assert AVSTFPConfig().timeline == "differences"
    assert AVSTFPConfig.from_dict(AVSTFPConfig(timeline="class_tokens").to_dict()).timeline == "class_tokens"
    with pytest.raises(ValueError, match="timeline"):
        AVSTFPConfig(timeline="frames")

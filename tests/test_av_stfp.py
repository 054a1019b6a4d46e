"""AV-STFP's prompts as the frozen attention reads them, checked against timm's own block modules on a tiny random
ViT: each prompt type in a softmax of its own, added per head through its gate."""

from __future__ import annotations

import pytest
import torch

from tests.zoo import BATCH, FRAMES, build, inputs

pytestmark = pytest.mark.usefixtures("one_thread")


def _heads(block: torch.nn.Module, tokens: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(S, N, D) → q, k, v, each (S, H, N, d), through timm's norm1 and qkv."""
    attn = block.attn
    s, n, d = tokens.shape
    qkv = attn.qkv(block.norm1(tokens)).view(s, n, 3, attn.num_heads, d // attn.num_heads)
    return qkv.permute(2, 0, 3, 1, 4).unbind(0)


def _read(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    return ((q @ k.transpose(-2, -1)) * scale).softmax(-1) @ v


def _reference_block(block: torch.nn.Module, x: torch.Tensor, context: int,
                     prompt_sets: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """timm's block where all of x's tokens are queries but only the first ``context`` are keys/values, and the
    queries also read each (tokens (S, P, D), gate (H,)) of ``prompt_sets`` in a softmax of its own, times the
    gate; then the block's MLP, both with their residual adds."""
    scale = block.attn.scale
    q, k, v = _heads(block, x)
    u = _read(q, k[:, :, :context], v[:, :, :context], scale)
    for tokens, gate in prompt_sets:
        _, pk, pv = _heads(block, tokens.expand(x.shape[0], -1, -1))
        u = u + gate.view(1, -1, 1, 1) * _read(q, pk, pv, scale)
    s, n, d = x.shape
    x = x + block.ls1(block.attn.proj(u.transpose(1, 2).reshape(s, n, d)))
    return x + block.ls2(block.mlp(block.norm2(x)))


def _first_layer_tokens(model) -> torch.Tensor:
    """The video tokens entering layer 1, (B·T, 1 + N, D), with class tokens that differ between segments."""
    method = model.method
    video, audio = inputs(model)
    x = method.backbone.pre_norm(method.embed(video, audio)["video"])
    return x + torch.randn(x.shape[0], 1, x.shape[-1], generator=torch.Generator().manual_seed(1))


def _open_gates(prompts, seed: int = 2) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for gates in (prompts.spatial_gates, prompts.temporal_gates, prompts.fusion_gates):
            for gate in (gates or {}).values():
                gate.copy_(torch.rand(gate.shape, generator=generator) + 0.5)


@pytest.mark.parametrize("timeline", ["differences", "class_tokens"])
def test_temporal_prompts_read_the_clips_timeline_through_their_gate(timeline):
    model = build("vit", "av_stfp", spatial_prompts=False, fusion_prompts=False, timeline=timeline).eval()
    method, prompts = model.method, model.method.layers[0]
    codes = prompts.time_codes["video"]
    with torch.no_grad():
        codes.normal_(0, 0.1)
    _open_gates(prompts)
    x = _first_layer_tokens(model)
    classes = x[:, 0].view(BATCH, FRAMES, -1)  # (B, T, D)
    rows = []
    for b in range(BATCH):
        for t in range(FRAMES):
            relative_to = classes[b, t] if timeline == "differences" else torch.zeros_like(classes[b, t])
            rows.append(torch.stack([classes[b, tau] - relative_to + codes[tau] for tau in range(FRAMES)]))
    block = method.backbone.model.blocks[0]
    expected = _reference_block(block, x, x.shape[1], [(torch.stack(rows), prompts.temporal_gates["video"])])
    with torch.no_grad():
        ours, fusion_out = method._layer(method.backbone.blocks[0], prompts, "video", x, None)
    torch.testing.assert_close(ours, expected.detach(), rtol=1e-5, atol=1e-5)
    assert fusion_out is None


def test_spatial_and_fusion_prompts_are_read_by_every_token_and_fusion_tokens_read_the_segment():
    model = build("vit", "av_stfp", temporal_prompts=False, num_spatial_prompts=3, num_fusion_prompts=2).eval()
    method, prompts = model.method, model.method.layers[1]  # layer 2: layer 1's fusion tokens arrive
    _open_gates(prompts)
    x = _first_layer_tokens(model)
    received = torch.randn(x.shape[0], 2, x.shape[-1], generator=torch.Generator().manual_seed(3))
    spatial, fusion = prompts.spatial["video"], prompts.fusion["video"]
    queries = torch.cat([x, fusion.expand(x.shape[0], -1, -1)], dim=1)  # fusion tokens: queries, not keys
    expected = _reference_block(method.backbone.model.blocks[1], queries, x.shape[1],
                                [(spatial[None], prompts.spatial_gates["video"]),
                                 (received, prompts.fusion_gates["video"])])
    with torch.no_grad():
        ours, fusion_out = method._layer(method.backbone.blocks[1], prompts, "video", x, received)
    torch.testing.assert_close(ours, expected[:, :x.shape[1]].detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fusion_out, expected[:, x.shape[1]:].detach(), rtol=1e-5, atol=1e-5)


def test_closed_gates_leave_each_stream_the_frozen_block():
    model = build("vit", "av_stfp").eval()
    method = model.method
    x = _first_layer_tokens(model)
    received = torch.randn(x.shape[0], 1, x.shape[-1])
    with torch.no_grad():
        ours, _ = method._layer(method.backbone.blocks[1], method.layers[1], "video", x, received)
        expected = method.backbone.model.blocks[1](x)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


def test_options_validate():
    from avadapt.methods.av_stfp import AVSTFPConfig

    assert AVSTFPConfig.from_dict(AVSTFPConfig(timeline="class_tokens").to_dict()).timeline == "class_tokens"
    with pytest.raises(ValueError, match="timeline"):
        AVSTFPConfig(timeline="frames")

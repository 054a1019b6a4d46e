"""Guard for the private timm Swin details ``avadapt/backbones/swin.py`` relies on.

If one of these fails after a timm upgrade, timm changed its Swin internals: window layout, shift, masks,
the attention projections or the pre-/post-norm placement. Fix ``backbones/swin.py`` (and only it) until
these pass again; every Swin method computes through it.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from avadapt.backbones import create_backbone
from tests.zoo import SWIN_KWARGS, randomize_norms

VERSIONS = {1: "swin_tiny_patch4_window7_224", 2: "swinv2_tiny_window8_256"}


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_backbone(version: int, **overrides):
    torch.manual_seed(0)
    backbone = create_backbone(VERSIONS[version], **{**SWIN_KWARGS, **overrides})
    randomize_norms(backbone.model)  # Swin-V2 starts with zero post-norms: every block would be the identity
    return backbone


@pytest.mark.parametrize("version", [1, 2])
def test_timm_still_has_the_attributes_we_use(version):
    backbone = tiny_backbone(version)
    stage = backbone.model.layers[1]
    assert hasattr(stage, "downsample") and hasattr(stage, "blocks") and hasattr(stage, "output_resolution")
    block = stage.blocks[0]
    for name in ("_attn", "attn_mask", "shift_size", "window_size", "input_resolution", "norm1", "norm2", "mlp"):
        assert hasattr(block, name), f"timm Swin v{version} blocks lost {name!r}"
    attn = block.attn
    for name in ("qkv", "proj", "num_heads") + (("scale",) if version == 1 else
                                                 ("logit_scale", "q_bias", "k_bias", "v_bias", "qkv_bias_separate")):
        assert hasattr(attn, name), f"timm Swin v{version} WindowAttention lost {name!r}"
    assert hasattr(backbone.model, "layers") and hasattr(backbone.model, "patch_embed")


@pytest.mark.parametrize("version", [1, 2])
def test_handles_reproduce_timm_forward_features_exactly(version):
    """attention + ffn with the residual adds, block by block and stage by stage, is timm's forward."""
    backbone = tiny_backbone(version)
    frames = torch.randn(2, 3, 32, 32)
    tokens = backbone.video_tokens(frames)
    for stage in backbone.stages:
        tokens = stage.downsample(tokens)
        for handle in stage.blocks:
            branch_sum = tokens + handle.attention(tokens)
            branch_sum = branch_sum + handle.ffn(branch_sum)
            torch.testing.assert_close(branch_sum, handle.run(tokens), rtol=0, atol=1e-6)
            assert handle.attention(tokens).abs().mean() > 1e-3  # the blocks really do something
            tokens = handle.run(tokens)
    expected = backbone.model.forward_features(frames).flatten(1, 2)
    torch.testing.assert_close(backbone.final_norm(tokens), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("version", [1, 2])
def test_window_layout_is_the_one_timm_attends_over(version):
    """Our partition + timm's window attention with its mask + our reverse = timm's ``_attn``, shifted or not."""
    backbone = tiny_backbone(version)
    shifted_seen = False
    tokens = backbone.video_tokens(torch.randn(2, 3, 32, 32))
    for stage in backbone.stages:
        tokens = stage.downsample(tokens)
        for handle in stage.blocks:
            block = handle.block
            shifted_seen |= any(handle.shift_size)
            assert handle.shift_size == tuple(block.shift_size) and handle.window_size == tuple(block.window_size)
            inner = block.norm1(tokens) if version == 1 else tokens
            windows = handle.windows(inner)
            assert windows.shape[1] == handle.window_size[0] * handle.window_size[1]
            torch.testing.assert_close(handle.merge_windows(windows), inner, rtol=0, atol=0)
            ours = handle.merge_windows(block.attn(windows, mask=block.attn_mask))
            timm_attn = block._attn(inner.view(inner.shape[0], *handle.grid, -1)).flatten(1, 2)
            torch.testing.assert_close(ours, timm_attn, rtol=0, atol=1e-6)
            tokens = handle.run(tokens)
    assert shifted_seen, "the tiny model must exercise a shifted block"


@pytest.mark.parametrize("version", [1, 2])
def test_attention_over_time_uses_the_frozen_projections_like_timm(version):
    """With a 2×2 window, a length-4 sequence is one window: our core equals timm's WindowAttention on it
    once timm's own position bias is handed over as ours (v1), or made constant (v2: 16·sigmoid(0) = 8)."""
    backbone = tiny_backbone(version, window_size=2)
    handle = backbone.blocks[0]
    attn = handle.block.attn
    seq = torch.randn(5, 4, handle.dim)
    if version == 1:
        bias = attn._get_rel_pos_bias()  # (1, heads, 4, 4)
    else:
        with torch.no_grad():
            attn.cpb_mlp[-1].weight.zero_()  # continuous position bias → 16·sigmoid(0) everywhere
        bias = torch.zeros(1, handle.num_heads, 4, 4)
    torch.testing.assert_close(handle._attention_core(seq, bias), attn(seq), rtol=0, atol=1e-5)
    # and the norm placement of attention_over_time follows the block's (pre-norm v1, post-norm v2)
    expected = attn(handle.block.norm1(seq)) if version == 1 else handle.block.norm1(attn(seq))
    torch.testing.assert_close(handle.attention_over_time(seq, bias), expected, rtol=0, atol=1e-5)


def test_last_stage_of_swin_224_has_no_shift_though_its_odd_blocks_are_shifted_by_design():
    with torch.device("meta"):
        backbone = create_backbone("swin_large_patch4_window7_224")
    last = backbone.stages[-1]
    assert last.grid == (7, 7)
    assert [h.shift_size for h in last.blocks] == [(0, 0), (0, 0)]
    assert [h.shifted_by_design for h in last.blocks] == [False, True]
    assert [h.shift_size for h in backbone.stages[0].blocks] == [(0, 0), (3, 3)]


@pytest.mark.parametrize("version", [1, 2])
def test_tiled_spectrogram_through_rgb_patch_embed_equals_summed_kernel(version):
    """LAVISH tiles the spectrogram to three channels; our 'sum' reduction is that, up to float error."""
    backbone = tiny_backbone(version)
    backbone.audio = type(backbone.audio)(num_mel_bins=32, num_frames=32, kernel_reduction="sum")
    spectrogram = torch.randn(2, 1, 32, 32)
    tiled = backbone.model.patch_embed(spectrogram.expand(-1, 3, -1, -1)).flatten(1, 2)
    torch.testing.assert_close(backbone.audio_tokens(spectrogram), tiled, rtol=1e-5, atol=1e-5)
    mean_kernel = F.conv2d(spectrogram, backbone.model.patch_embed.proj.weight.mean(1, keepdim=True),
                           backbone.model.patch_embed.proj.bias, stride=4)
    backbone.audio = type(backbone.audio)(num_mel_bins=32, num_frames=32, kernel_reduction="mean")
    expected = backbone.model.patch_embed.norm(mean_kernel.permute(0, 2, 3, 1)).flatten(1, 2)
    torch.testing.assert_close(backbone.audio_tokens(spectrogram), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("version", [1, 2])
def test_ffn_recompute_gives_the_same_values_and_gradients(version):
    backbone = tiny_backbone(version)
    tokens = backbone.video_tokens(torch.randn(2, 3, 32, 32)).detach().requires_grad_(True)
    grads = []
    for enabled in (False, True):
        backbone.set_ffn_recompute(enabled)
        out = backbone.blocks[0].ffn(tokens)
        (grad,) = torch.autograd.grad(out.square().sum(), tokens)
        grads.append((out.detach(), grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=0, atol=0)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-6, atol=1e-6)

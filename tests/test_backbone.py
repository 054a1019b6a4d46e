"""The frozen backbone: audio entrance geometry, local weight loading, refusal of unsafe pickles."""

from __future__ import annotations

import pickle

import pytest
import safetensors.torch
import timm
import torch

from avadapt import kernels
from avadapt.backbones import AudioEmbeddingConfig, UnsafeCheckpointError, create_backbone
from avadapt.errors import CheckpointError
from tests.conftest import TINY_AUDIO, TINY_FRAMES, TINY_IMAGE, TINY_VIT


@pytest.mark.parametrize("name,grid", [
    ("vit_base_patch16_clip_224", (8, 6)),   # 128 mel / 16 rows × 102 frames / 16 columns
    ("vit_large_patch14_clip_224", (9, 7)),  # 128 / 14 × 102 / 14
])
def test_audio_entrance_shapes_for_128_mel_by_102_frames(name, grid):
    with torch.device("meta"):
        backbone = create_backbone(name)
        tokens = backbone.audio_tokens(torch.empty(4, 1, 128, 102))
    assert backbone.audio_grid == grid
    assert backbone.audio_position_embedding().shape == (1, 1 + grid[0] * grid[1], backbone.embed_dim)
    assert tokens.shape == (4, 1 + grid[0] * grid[1], backbone.embed_dim)


def test_audio_position_grid_is_the_centre_crop_in_mel_by_time_orientation():
    backbone = create_backbone(TINY_VIT, img_size=96, audio=AudioEmbeddingConfig(num_mel_bins=64, num_frames=32))
    rows, cols = backbone.video_grid  # 6 × 6 pretrained grid
    pos = torch.arange(rows * cols, dtype=torch.float32)
    with torch.no_grad():
        backbone.model.pos_embed[0, 1:] = pos[:, None]  # each position embedding = its grid index
    fitted = backbone.audio_position_embedding()[0, 1:, 0].view(*backbone.audio_grid)
    assert backbone.audio_grid == (4, 2)  # 4 mel rows × 2 time columns
    expected = pos.view(rows, cols)[1:5, 2:4]  # centre rows 1..4, centre columns 2..3: no transpose
    assert torch.equal(fitted, expected)


def test_audio_kernel_is_the_rgb_kernel_collapsed_to_one_channel():
    for reduction in ("sum", "mean"):
        audio = AudioEmbeddingConfig(num_mel_bins=32, num_frames=48, kernel_reduction=reduction)
        backbone = create_backbone(TINY_VIT, img_size=TINY_IMAGE, audio=audio)
        spectrogram = torch.randn(1, 1, 32, 48)
        as_rgb = spectrogram.expand(1, 3, 32, 48) / (1 if reduction == "sum" else 3)
        direct = backbone.model.patch_embed.proj(as_rgb).flatten(2).transpose(1, 2)
        ours = backbone.audio_tokens(spectrogram)[:, 1:] - backbone.audio_position_embedding()[:, 1:]
        torch.testing.assert_close(ours, direct, rtol=1e-5, atol=1e-5)


def test_wrong_spectrogram_size_is_a_clear_error():
    backbone = create_backbone(TINY_VIT, img_size=TINY_IMAGE, audio=TINY_AUDIO)
    with pytest.raises(ValueError, match="32 mel bins × 48 frames"):
        backbone.audio_tokens(torch.randn(1, 1, 48, 32))


def _reference_state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return timm.create_model(TINY_VIT, img_size=TINY_IMAGE, num_classes=10).state_dict()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights_round_trip(tmp_path, suffix):
    state = _reference_state_dict()
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        safetensors.torch.save_file(state, path)
    else:
        torch.save({"state_dict": state}, path)  # wrapped, as training scripts save it
    backbone = create_backbone(TINY_VIT, weights=path, img_size=TINY_IMAGE, audio=TINY_AUDIO)
    loaded = backbone.model.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in loaded)
    assert not any(p.requires_grad for p in backbone.parameters())


def test_timm_pretrained_cfg_overlay_file_path(tmp_path):
    state = _reference_state_dict()
    path = tmp_path / "weights.safetensors"
    safetensors.torch.save_file(state, path)
    backbone = create_backbone(TINY_VIT, pretrained=True, pretrained_cfg_overlay={"file": str(path)},
                               img_size=TINY_IMAGE, audio=TINY_AUDIO)
    assert torch.equal(backbone.model.pos_embed, state["pos_embed"])


def test_checkpoint_needing_arbitrary_unpickling_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": _reference_state_dict(), "extra": pickle.PickleError("any object")}, path)
    with pytest.raises(UnsafeCheckpointError, match="evil.pth.*refusing.*safetensors"):
        create_backbone(TINY_VIT, weights=path, img_size=TINY_IMAGE, audio=TINY_AUDIO)


def test_mismatched_checkpoint_names_the_problem(tmp_path):
    state = _reference_state_dict()
    del state["blocks.0.attn.qkv.weight"]
    path = tmp_path / "partial.safetensors"
    safetensors.torch.save_file(state, path)
    with pytest.raises(CheckpointError, match="partial.safetensors.*missing.*blocks.0.attn.qkv.weight"):
        create_backbone(TINY_VIT, weights=path, img_size=TINY_IMAGE, audio=TINY_AUDIO)
    with pytest.raises(CheckpointError, match="nowhere.safetensors: backbone weights not found"):
        create_backbone(TINY_VIT, weights=tmp_path / "nowhere.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cut.safetensors: not a readable safetensors file"):
        create_backbone(TINY_VIT, weights=cut, img_size=TINY_IMAGE, audio=TINY_AUDIO)


def test_block_handle_reproduces_the_timm_block_and_caches_reduced_precision_weights():
    """Guard for the one place that re-reads timm's Attention/Mlp internals (backbones/vit.py)."""
    backbone = create_backbone(TINY_VIT, img_size=TINY_IMAGE, audio=TINY_AUDIO)
    handle = backbone.blocks[0]
    assert handle.own_kernels, "timm's ViT block no longer uses plain Attention/Mlp: revisit BlockHandle"
    x = torch.randn(3, 17, backbone.embed_dim)
    through_handle = x + handle.attention(x)
    through_handle = through_handle + handle.ffn(through_handle)
    torch.testing.assert_close(through_handle, handle.block(x), rtol=1e-5, atol=1e-5)
    for seq in (5, 40):  # explicit-matmul path for short sequences, flash kernel for long ones
        y = torch.randn(2, seq, backbone.embed_dim)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ours, timm_own = handle.attention(y), handle.block.attn(handle.block.norm1(y))
        torch.testing.assert_close(ours.float(), timm_own.float(), rtol=0.05, atol=0.05)
    assert any(w.dtype == torch.bfloat16 for _, w, _ in handle.attention.weights._cast.values())
    with torch.no_grad():  # a weight change (e.g. loading a checkpoint) invalidates the cached copy
        handle.block.attn.qkv.weight.mul_(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        doubled = handle.attention(y)
    assert not torch.allclose(doubled.float(), ours.float())


def test_data_config_follows_the_built_image_size():
    backbone = create_backbone(TINY_VIT, img_size=TINY_IMAGE, audio=TINY_AUDIO)
    assert backbone.data_config["input_size"] == (3, TINY_IMAGE, TINY_IMAGE)


def test_short_attention_then_linear_backward_is_the_gradient_of_its_forward():
    from avadapt.kernels.branches import _ShortAttentionThenLinear

    torch.manual_seed(0)
    qkv = torch.randn(3, 5, 3, 2, 4, dtype=torch.float64, requires_grad=True)  # (S, T, 3, H, d)
    weight = torch.randn(6, 8, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: _ShortAttentionThenLinear.apply(*a, 0.5), (qkv, weight, bias))


@pytest.mark.parametrize("seq", [5, 40])  # short (kept softmax) and long (fused kernel) sequences
@pytest.mark.parametrize("need_output", [True, False])
def test_fused_projection_of_the_attention_equals_the_adapter_applied_to_timms_attention(seq, need_output):
    """down(attention(x)) through the fused projection must be the same function, value and gradients."""
    backbone = create_backbone(TINY_VIT, img_size=TINY_IMAGE, audio=TINY_AUDIO)
    handle = backbone.blocks[0]
    down = torch.nn.Linear(backbone.embed_dim, 3)
    x = torch.randn(2, seq, backbone.embed_dim, requires_grad=True)
    if need_output:
        output, hidden = kernels.branch_and_projection(handle.attention, x, down)
    else:
        hidden = kernels.projection_of_branch(handle.attention, x, down)
    reference = handle.block.attn(handle.block.norm1(x))
    torch.testing.assert_close(hidden, down(reference), rtol=1e-5, atol=1e-5)
    if need_output:
        torch.testing.assert_close(output, reference, rtol=1e-5, atol=1e-5)
    ours = torch.autograd.grad(hidden.square().sum(), (x, down.weight, down.bias))
    theirs = torch.autograd.grad(down(reference).square().sum(), (x, down.weight, down.bias))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["none", "tanh", "quick_gelu"])
@pytest.mark.parametrize("rows_at_once", [4, 1024])  # the recomputed activation in several pieces, or one
def test_activation_then_two_linears_backward_is_the_gradient_of_its_forward(kind, rows_at_once, monkeypatch):
    from avadapt.kernels import branches
    from avadapt.kernels.branches import _ActivationThenTwoLinears

    monkeypatch.setattr(branches, "_RECOMPUTE_ROWS", rows_at_once)
    torch.manual_seed(0)
    h = torch.randn(2, 5, 8, dtype=torch.float64, requires_grad=True)  # 10 rows
    weight, bias = torch.randn(4, 8, dtype=torch.float64), torch.randn(4, dtype=torch.float64)  # frozen
    fused_weight = torch.randn(2, 8, dtype=torch.float64, requires_grad=True)
    fused_bias = torch.randn(2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda h, w, b: _ActivationThenTwoLinears.apply(h, kind, weight, bias, w, b),
                                    (h, fused_weight, fused_bias))


@pytest.mark.parametrize("quick_gelu", [False, True])  # timm ViTs, OpenAI CLIP weights
def test_fused_projection_of_the_ffn_equals_the_adapter_applied_to_timms_mlp(quick_gelu):
    from avadapt.backbones import BlockHandle

    backbone = create_backbone(TINY_VIT, img_size=TINY_IMAGE, audio=TINY_AUDIO)
    block = backbone.model.blocks[0]
    if quick_gelu:
        block.mlp.act = timm.layers.QuickGELU()
    handle = BlockHandle(block)
    down = torch.nn.Linear(backbone.embed_dim, 3)
    x = torch.randn(2, 7, backbone.embed_dim, requires_grad=True)
    output, hidden = kernels.branch_and_projection(handle.ffn, x, down)
    reference = block.mlp(block.norm2(x))
    torch.testing.assert_close(output, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(hidden, down(reference), rtol=1e-5, atol=1e-5)
    ours = torch.autograd.grad((output.sum() + hidden.square().sum()), (x, down.weight, down.bias))
    theirs = torch.autograd.grad(reference.sum() + down(reference).square().sum(), (x, down.weight, down.bias))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_frozen_weights_stored_in_bf16_change_nothing_under_bf16_autocast(tiny_options):
    """bf16 autocast casts frozen fp32 weights to bf16 anyway: storing them so must give identical results."""
    import avadapt

    torch.manual_seed(0)
    stored_fp32 = avadapt.create_model(method="stg_cma", drop_path=0.0, **tiny_options).eval()  # no dropout
    stored_bf16 = avadapt.create_model(method="stg_cma", drop_path=0.0, **tiny_options).eval()
    stored_bf16.load_state_dict(stored_fp32.state_dict())
    for p in list(stored_fp32.trainable_parameters()):  # non-zero adapters, so every path matters
        torch.nn.init.normal_(p, std=0.02)
    stored_bf16.load_state_dict(stored_fp32.state_dict())
    freed = stored_bf16.backbone.store_frozen_weights_as(torch.bfloat16)
    # per block qkv 64·192 + 192, proj 64·64 + 64, fc1 64·192 + 192, fc2 192·64 + 64 = 41,472 weights and
    # biases, 6 blocks, 2 bytes each given back
    assert freed == 6 * 41_472 * 2
    assert stored_bf16.backbone.model.blocks[0].attn.qkv.weight.dtype == torch.bfloat16
    video = torch.randn(1, TINY_FRAMES, 3, TINY_IMAGE, TINY_IMAGE)
    audio = torch.randn(1, TINY_FRAMES, 1, TINY_AUDIO.num_mel_bins, TINY_AUDIO.num_frames)
    outputs, grads = [], []
    for model in (stored_fp32, stored_bf16):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(video, audio)
        out.float().square().sum().backward()
        outputs.append(out)
        grads.append([p.grad for p in model.trainable_parameters()])
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert stored_bf16(video, audio).dtype == torch.float32  # and fp32 use still works


@pytest.mark.parametrize(("audio_grid", "start"), [((9, 7), (4, 5)), ((8, 6), (4, 5)), ((6, 8), (5, 4))])
def test_audio_position_crop_starts_where_the_reference_centres_it(audio_grid, start):
    """16 × 16 grid (ViT-L/14 at 224); ViT-L/14's audio grid is 9 × 7 (128 mel bins × 102 frames)."""
    patch = 16  # test_vit
    audio = AudioEmbeddingConfig(num_mel_bins=audio_grid[0] * patch, num_frames=audio_grid[1] * patch)
    backbone = create_backbone(TINY_VIT, img_size=16 * patch, audio=audio)
    assert backbone.video_grid == (16, 16)
    grid = backbone.model.pos_embed[0, 1:].reshape(16, 16, -1)
    top, left = start
    expected = grid[top:top + audio_grid[0], left:left + audio_grid[1]].reshape(-1, grid.shape[-1])
    torch.testing.assert_close(backbone.audio_position_embedding()[0, 1:], expected, rtol=0, atol=0)

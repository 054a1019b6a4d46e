"""STG-CMA, DG-SCT's adapter and AV-STFP's prompted layers written out in plain PyTorch, for
``tests/test_equations.py``.

Written from the methods' descriptions, not from avadapt: STG-CMA (Wang et al., CVPRW 2024) and its reference
code (kaiw7/STG-CMA, ``AVE/model/CLIP_AVE.py`` and ``Swin_AVE.py``), DG-SCT (Duan et al., NeurIPS 2023), and the
design text of our AV-STFP (``avadapt/methods/av_stfp/model.py``'s module docstring). Nothing here imports
avadapt, and nothing is an ``nn.Module``: every function reads the weights it needs from a dict of tensors keyed
by state-dict name (a timm backbone's ``state_dict()``, a method's ``named_parameters()``), so the only thing the
two implementations share is the weights.

Tokens keep an explicit time axis throughout: ``(B, T, N, D)``, segment t of clip b at ``[b, t]``. Attention over
the tokens of a frame and attention over the T segments of a token position are the same function applied along
different axes, so no reshape can put a token into the wrong sequence.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

Weights = dict[str, torch.Tensor]
DropMask = Callable[[float, tuple[int, ...]], torch.Tensor]
"""(rate, (B, N)) → the stochastic-depth factors (0 or 1/(1 − rate)) of each clip and token position."""

MODALITIES = ("video", "audio")
OTHER = {"video": "audio", "audio": "video"}


# --- elementary operations ---------------------------------------------------------------------------------------

def linear(x: torch.Tensor, w: Weights, name: str) -> torch.Tensor:
    """x·Wᵀ + b for the linear layer ``name`` (no bias where the dict has none)."""
    out = x @ w[f"{name}.weight"].T
    bias = w.get(f"{name}.bias")
    return out if bias is None else out + bias


def layer_norm(x: torch.Tensor, w: Weights, name: str, eps: float) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = (x - mean).pow(2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w[f"{name}.weight"] + w[f"{name}.bias"]


def gelu(x: torch.Tensor) -> torch.Tensor:
    """The exact GELU, x·Φ(x)."""
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def softmax(x: torch.Tensor) -> torch.Tensor:
    e = torch.exp(x - x.amax(-1, keepdim=True))
    return e / e.sum(-1, keepdim=True)


def attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float,
           bias: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(scale·Q·Kᵀ + bias)·V over the last two axes, (..., L_q, d), (..., L_k, d) → (..., L_q, d)."""
    scores = query @ key.transpose(-1, -2) * scale
    return softmax(scores if bias is None else scores + bias) @ value


def multi_head_attention(queries: torch.Tensor, keys_values: torch.Tensor, w: Weights, name: str, heads: int,
                         bias: torch.Tensor | None = None,
                         gated: tuple[tuple[torch.Tensor, torch.Tensor], ...] = ()) -> torch.Tensor:
    """A frozen attention layer ``name`` (packed ``qkv`` and ``proj``) of queries (..., L_q, D) over keys and
    values (..., L_k, D): each head attends with scale 1/√d; bias (…, heads, L_q, L_k) is added to its logits.
    ``gated``: further (keys_values (..., P, D), gate (heads,)) pairs, each read by the same queries in a softmax
    of its own and added to each head's output times that head's gate, before the output projection."""
    d_model = queries.shape[-1]
    weight, qkv_bias = w[f"{name}.qkv.weight"], w[f"{name}.qkv.bias"]
    scale = (d_model // heads) ** -0.5

    def split(x: torch.Tensor) -> torch.Tensor:  # (..., L, D) → (..., heads, L, D/heads)
        return x.unflatten(-1, (heads, -1)).transpose(-2, -3)

    def keys_and_values(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = tokens @ weight[d_model:2 * d_model].T + qkv_bias[d_model:2 * d_model]
        v = tokens @ weight[2 * d_model:].T + qkv_bias[2 * d_model:]
        return split(k), split(v)

    q = split(queries @ weight[:d_model].T + qkv_bias[:d_model])
    out = attend(q, *keys_and_values(keys_values), scale, bias)  # (..., heads, L_q, d)
    for tokens, gate in gated:
        out = out + gate[:, None, None] * attend(q, *keys_and_values(tokens), scale)
    return linear(out.transpose(-2, -3).flatten(-2), w, f"{name}.proj")


def bottleneck_down(x: torch.Tensor, w: Weights, name: str) -> torch.Tensor:
    """H = GELU(W_down·x + b_down): the compressed tokens of a bottleneck adapter (STG-CMA, AIM)."""
    return gelu(linear(x, w, f"{name}.down"))


def bottleneck(x: torch.Tensor, w: Weights, name: str) -> torch.Tensor:
    """W_up·GELU(W_down·x + b_down) + b_up, no skip inside."""
    return linear(bottleneck_down(x, w, name), w, f"{name}.up")


def cross_modal_exchange(video: torch.Tensor, audio: torch.Tensor, video_gate: torch.Tensor | None,
                         audio_gate: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """STG-CMA's parameter-free cross-modal attention between the compressed tokens of one segment (or window):
    H_v ← H_v + g_v·softmax(H_v·H_aᵀ)·H_a and H_a ← H_a + g_a·softmax(H_a·H_vᵀ)·H_v, both from the tokens before
    the exchange, no 1/√d scaling. A direction without a gate is left out."""
    new_video = video if video_gate is None else video + video_gate * attend(video, audio, audio, 1.0)
    new_audio = audio if audio_gate is None else audio + audio_gate * attend(audio, video, video, 1.0)
    return new_video, new_audio


def gates(w: Weights, block: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    return w.get(f"{block}.gates.video_gate"), w.get(f"{block}.gates.audio_gate")


# --- a ViT (timm / CLIP layout) ----------------------------------------------------------------------------------

def vit_attention(x: torch.Tensor, w: Weights, block: str, heads: int, eps: float) -> torch.Tensor:
    """A(x): the block's frozen LayerNorm and multi-head self-attention, over the second-to-last axis."""
    h = layer_norm(x, w, f"{block}.norm1", eps)
    return multi_head_attention(h, h, w, f"{block}.attn", heads)


def vit_ffn(x: torch.Tensor, w: Weights, block: str, eps: float) -> torch.Tensor:
    """F(x): the block's frozen LayerNorm and MLP (GELU)."""
    h = layer_norm(x, w, f"{block}.norm2", eps)
    return linear(gelu(linear(h, w, f"{block}.mlp.fc1")), w, f"{block}.mlp.fc2")


def vit_video_tokens(video: torch.Tensor, w: Weights) -> torch.Tensor:
    """(B, T, 3, H, W) → (B, T, 1 + N, D): class token, then the row-major patch grid, plus positions."""
    b, t = video.shape[:2]
    kernel = w["patch_embed.proj.weight"]
    x = F.conv2d(video.flatten(0, 1), kernel, w.get("patch_embed.proj.bias"), stride=kernel.shape[-1])
    x = x.flatten(2).transpose(1, 2)  # (B*T, N, D)
    x = torch.cat([w["cls_token"].expand(len(x), -1, -1), x], dim=1) + w["pos_embed"]
    return x.unflatten(0, (b, t))


def vit_audio_tokens(audio: torch.Tensor, w: Weights, video_grid: tuple[int, int]) -> torch.Tensor:
    """(B, T, 1, F, L) spectrograms → (B, T, 1 + N_a, D): the RGB patch kernel summed over colours (STG-CMA's
    CLIP code), the class token, and the centre of the pretrained position grid (mel rows × frame columns),
    starting at row ⌊rows/2⌋ − ⌊want/2⌋ as the reference crops."""
    b, t = audio.shape[:2]
    kernel = w["patch_embed.proj.weight"].sum(1, keepdim=True)
    x = F.conv2d(audio.flatten(0, 1), kernel, w.get("patch_embed.proj.bias"), stride=kernel.shape[-1])
    want_rows, want_cols = x.shape[-2:]
    x = x.flatten(2).transpose(1, 2)  # (B*T, N_a, D)
    pos = w["pos_embed"]
    rows, cols = video_grid
    top, left = rows // 2 - want_rows // 2, cols // 2 - want_cols // 2
    grid = pos[:, 1:].unflatten(1, (rows, cols))[:, top:top + want_rows, left:left + want_cols].flatten(1, 2)
    x = torch.cat([w["cls_token"].expand(len(x), -1, -1), x], dim=1) + torch.cat([pos[:, :1], grid], dim=1)
    return x.unflatten(0, (b, t))


# --- STG-CMA -----------------------------------------------------------------------------------------------------

def temporal_step(x: torch.Tensor, adapted: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """x + DP(adapted) with DP's factors per clip and token position, shared by the clip's T segments:
    x, adapted (B, T, N, D), keep (B, N) or None."""
    return x + (adapted if keep is None else keep[:, None, :, None] * adapted)


def stg_cma_exchange(hidden: dict[str, torch.Tensor], w: Weights, block: str) -> dict[str, torch.Tensor]:
    video_gate, audio_gate = gates(w, block)
    video, audio = cross_modal_exchange(hidden["video"], hidden["audio"], video_gate, audio_gate)
    return {"video": video, "audio": audio}


def stg_cma_vit(video: torch.Tensor, audio: torch.Tensor, frozen: Weights, adapters: Weights, *, heads: int,
                depth: int, eps: float, video_grid: tuple[int, int], drop_path: float = 0.0,
                drop_mask: DropMask | None = None) -> dict[str, torch.Tensor]:
    """STG-CMA on a CLIP-style ViT, per the paper and its reference code (``fusion`` mode), all blocks adapted.

    Tokens x_m (B, T, N_m, D) of modality m get a learnt temporal embedding e_m[t] on every token of segment t,
    then the frozen pre-norm. With A = frozen LN1 + MHSA, F = frozen LN2 + MLP and adapters W_up·GELU(W_down·),
    each block runs, for both modalities:

    1. temporal: x_m ← x_m + DP(T-Adapter_m(A(x_m) along time)): the frozen attention over each token position's
       T segments (class token included);
    2. spatial: S_m = A(x_m) per segment; H_m = GELU(W_down·S_m); cross-modal exchange of H_v and H_a within the
       segment (gates g_v, g_a); x_m ← x_m + S_m + W_up·H_m;
    3. global: F_m = F(x_m); the same exchange with the same gates; x_m ← x_m + F_m + W_up·H_m.

    DP is stochastic depth at rate ``drop_path``·i/(depth − 1) for block i; ``drop_mask`` supplies its factors
    (None: no drop, evaluation). Returns per modality the class token after the trained copy of the final
    LayerNorm, ``{m}`` (B, T, D), and the normed patch tokens, ``{m}_tokens`` (B, T, N, D).
    """
    x = {"video": vit_video_tokens(video, frozen), "audio": vit_audio_tokens(audio, frozen, video_grid)}
    for m in MODALITIES:
        time_codes = adapters[f"temporal_embeddings.{m}"].reshape(1, x[m].shape[1], 1, -1)  # e_m[t], (1, T, 1, D)
        x[m] = x[m] + time_codes
        if "norm_pre.weight" in frozen:
            x[m] = layer_norm(x[m], frozen, "norm_pre", eps)
    for i in range(depth):
        block, adapted = f"blocks.{i}", f"blocks.{i}"
        rate = drop_path * i / max(depth - 1, 1)
        for m in MODALITIES:
            along_time = vit_attention(x[m].transpose(1, 2), frozen, block, heads, eps)  # (B, N, T, D)
            change = bottleneck(along_time, adapters, f"{adapted}.temporal_adapters.{m}").transpose(1, 2)
            keep = drop_mask(rate, (x[m].shape[0], x[m].shape[2])) if drop_mask is not None and rate > 0 else None
            x[m] = temporal_step(x[m], change, keep)
        spatial = {m: vit_attention(x[m], frozen, block, heads, eps) for m in MODALITIES}
        hidden = stg_cma_exchange(
            {m: bottleneck_down(spatial[m], adapters, f"{adapted}.spatial_adapters.{m}") for m in MODALITIES},
            adapters, adapted)
        x = {m: x[m] + spatial[m] + linear(hidden[m], adapters, f"{adapted}.spatial_adapters.{m}.up")
             for m in MODALITIES}
        ffn = {m: vit_ffn(x[m], frozen, block, eps) for m in MODALITIES}
        hidden = stg_cma_exchange(
            {m: bottleneck_down(ffn[m], adapters, f"{adapted}.global_adapters.{m}") for m in MODALITIES},
            adapters, adapted)
        x = {m: x[m] + ffn[m] + linear(hidden[m], adapters, f"{adapted}.global_adapters.{m}.up")
             for m in MODALITIES}
    out = {}
    for m in MODALITIES:
        normed = layer_norm(x[m], adapters, "tuned_final_norm", eps)
        out[m], out[f"{m}_tokens"] = normed[:, :, 0], normed[:, :, 1:]
    return out


# --- a Swin (v1) -------------------------------------------------------------------------------------------------

def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(..., H, W, C) → (..., nW, window², C), windows row-major, tokens row-major inside each."""
    *lead, height, width, c = x.shape
    x = x.reshape(*lead, height // window, window, width // window, window, c).transpose(-4, -3)
    return x.reshape(*lead, (height // window) * (width // window), window * window, c)


def window_merge(windows: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (..., nW, window², C) → (..., H, W, C)."""
    *lead, _, area, c = windows.shape
    window = math.isqrt(area)
    x = windows.reshape(*lead, height // window, width // window, window, window, c).transpose(-4, -3)
    return x.reshape(*lead, height, width, c)


def relative_position_bias(table: torch.Tensor, window: int) -> torch.Tensor:
    """Swin's bias (heads, window², window²): entry [h, i, j] = table[(Δy + w − 1)·(2w − 1) + Δx + w − 1, h] with
    (Δy, Δx) the offset of token i from token j inside the window."""
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    index = (ys[:, None] - ys[None, :] + window - 1) * (2 * window - 1) + (xs[:, None] - xs[None, :] + window - 1)
    return table[index].permute(2, 0, 1)


def shifted_window_mask(height: int, width: int, window: int, shift: int) -> torch.Tensor:
    """(nW, window², window²): −100 between tokens of a shifted window that come from different regions of the
    unshifted grid (the Swin paper's masked attention for cyclically shifted windows), 0 elsewhere."""
    region = torch.zeros(height, width)
    bounds = ((0, height - window), (height - window, height - shift), (height - shift, height))
    cols = ((0, width - window), (width - window, width - shift), (width - shift, width))
    label = 0
    for top, bottom in bounds:
        for left, right in cols:
            region[top:bottom, left:right] = label
            label += 1
    labels = window_partition(region[..., None], window)[..., 0]  # (nW, window²)
    return (labels[:, :, None] != labels[:, None, :]).float() * -100.0


def swin_window_attention(x: torch.Tensor, w: Weights, block: str, heads: int, window: int, shift: int,
                          eps: float) -> torch.Tensor:
    """A(x) of a Swin v1 block: LN1, cyclic shift by −shift, window partition, multi-head self-attention within
    each window with the relative position bias (and the mask of shifted windows), merge, shift back.
    x (..., H, W, C) → (..., H, W, C)."""
    height, width = x.shape[-3:-1]
    h = layer_norm(x, w, f"{block}.norm1", eps)
    if shift:
        h = torch.roll(h, shifts=(-shift, -shift), dims=(-3, -2))
    windows = window_partition(h, window)  # (..., nW, window², C)
    bias = relative_position_bias(w[f"{block}.attn.relative_position_bias_table"], window)  # (heads, A, A)
    if shift:
        bias = bias + shifted_window_mask(height, width, window, shift)[:, None]  # (nW, heads, A, A)
    out = window_merge(multi_head_attention(windows, windows, w, f"{block}.attn", heads, bias), height, width)
    return torch.roll(out, shifts=(shift, shift), dims=(-3, -2)) if shift else out


def swin_temporal_attention(x: torch.Tensor, w: Weights, block: str, heads: int, table: torch.Tensor,
                            eps: float) -> torch.Tensor:
    """The block's frozen LN1, qkv and proj run over each token position's T segments with a learnt temporal
    relative-position bias, entry [h, t, τ] = table[t − τ + T − 1, h] (query step minus key step, Swin's
    convention and the reference's ``t_relative_coords``). x (B, T, N, C) → (B, T, N, C)."""
    num_frames = x.shape[1]
    steps = torch.arange(num_frames)
    bias = table[steps[:, None] - steps[None, :] + num_frames - 1].permute(2, 0, 1)  # (heads, T, T)
    h = layer_norm(x.transpose(1, 2), w, f"{block}.norm1", eps)  # (B, N, T, C)
    return multi_head_attention(h, h, w, f"{block}.attn", heads, bias).transpose(1, 2)


def swin_ffn(x: torch.Tensor, w: Weights, block: str, eps: float) -> torch.Tensor:
    h = layer_norm(x, w, f"{block}.norm2", eps)
    return linear(gelu(linear(h, w, f"{block}.mlp.fc1")), w, f"{block}.mlp.fc2")


def patch_merging(x: torch.Tensor, w: Weights, name: str, eps: float) -> torch.Tensor:
    """(..., H, W, C) → (..., H/2, W/2, 2C): the 2×2 neighbours [(0,0), (1,0), (0,1), (1,1)] (row, column)
    concatenated, LayerNorm, Linear without bias."""
    merged = torch.cat([x[..., 0::2, 0::2, :], x[..., 1::2, 0::2, :], x[..., 0::2, 1::2, :], x[..., 1::2, 1::2, :]],
                       dim=-1)
    return layer_norm(merged, w, f"{name}.norm", eps) @ w[f"{name}.reduction.weight"].T


def swin_tokens(images: torch.Tensor, w: Weights, eps: float, kernel_mean: bool) -> torch.Tensor:
    """(B, T, C, H, W) → (B, T, H/p, W/p, D): patch convolution (RGB kernel averaged for 1-channel spectrograms,
    STG-CMA's Swin code), then the patch LayerNorm."""
    b, t = images.shape[:2]
    kernel = w["patch_embed.proj.weight"]
    if kernel_mean:
        kernel = kernel.mean(1, keepdim=True)
    x = F.conv2d(images.flatten(0, 1), kernel, w.get("patch_embed.proj.bias"), stride=kernel.shape[-1])
    x = layer_norm(x.permute(0, 2, 3, 1), w, "patch_embed.norm", eps)
    return x.unflatten(0, (b, t))


def stg_cma_swin(video: torch.Tensor, audio: torch.Tensor, frozen: Weights, adapters: Weights, *,
                 stages: list[dict], eps: float, drop_path: float = 0.0,
                 drop_mask: DropMask | None = None) -> dict[str, torch.Tensor]:
    """STG-CMA on a Swin v1, per the paper and its reference Swin code (``fusion`` mode).

    ``stages``: per stage ``{"depth", "heads", "window", "shift"}`` as the frozen Swin runs them (a stage whose
    grid is one window has no shift). Per block k (counted over all stages), on token grids (B, T, H, W, C):

    1. temporal, unshifted-by-design blocks only (even index in the stage): x_m ← x_m + DP(T-Adapter_m(
       A_time(x_m))), A_time the block's frozen projections over each position's T segments with the learnt
       temporal bias of modality m;
    2. spatial: S_m = shifted-window attention per segment; H_m = GELU(W_down·S_m); the cross-modal exchange
       pairs video window k with audio window k (same grid, same shift); x_m ← x_m + S_m + W_up·H_m;
    3. global: F_m = frozen MLP branch; the exchange over all tokens of the segment, same gates;
       x_m ← x_m + F_m + W_up·H_m.

    Stages open with the frozen patch merging. Returns per modality the frozen final LayerNorm averaged over
    tokens, ``{m}`` (B, T, C), and the normed tokens, ``{m}_tokens`` (B, T, N, C).
    """
    x = {"video": swin_tokens(video, frozen, eps, kernel_mean=False),
         "audio": swin_tokens(audio, frozen, eps, kernel_mean=True)}
    depth = sum(stage["depth"] for stage in stages)
    k = 0
    for s, stage in enumerate(stages):
        if s > 0:
            x = {m: patch_merging(x[m], frozen, f"layers.{s}.downsample", eps) for m in MODALITIES}
        heads, window, shift = stage["heads"], stage["window"], stage["shift"]
        for j in range(stage["depth"]):
            block, adapted = f"layers.{s}.blocks.{j}", f"blocks.{k}"
            block_shift = shift if j % 2 else 0
            rate = drop_path * k / max(depth - 1, 1)
            if j % 2 == 0:
                for m in MODALITIES:
                    b, t, height, width, c = x[m].shape
                    tokens = x[m].reshape(b, t, height * width, c)
                    change = bottleneck(
                        swin_temporal_attention(tokens, frozen, block, heads,
                                                adapters[f"{adapted}.temporal_position_bias.{m}.table"], eps),
                        adapters, f"{adapted}.temporal_adapters.{m}")
                    keep = drop_mask(rate, (b, height * width)) if drop_mask is not None and rate > 0 else None
                    x[m] = temporal_step(tokens, change, keep).reshape(b, t, height, width, c)
            height, width = x["video"].shape[-3:-1]
            spatial = {m: swin_window_attention(x[m], frozen, block, heads, window, block_shift, eps)
                       for m in MODALITIES}
            hidden = {m: bottleneck_down(spatial[m], adapters, f"{adapted}.spatial_adapters.{m}") for m in MODALITIES}
            if block_shift:
                hidden = {m: torch.roll(h, shifts=(-block_shift, -block_shift), dims=(-3, -2))
                          for m, h in hidden.items()}
            hidden = stg_cma_exchange({m: window_partition(h, window) for m, h in hidden.items()}, adapters, adapted)
            hidden = {m: window_merge(h, height, width) for m, h in hidden.items()}
            if block_shift:
                hidden = {m: torch.roll(h, shifts=(block_shift, block_shift), dims=(-3, -2))
                          for m, h in hidden.items()}
            x = {m: x[m] + spatial[m] + linear(hidden[m], adapters, f"{adapted}.spatial_adapters.{m}.up")
                 for m in MODALITIES}
            ffn = {m: swin_ffn(x[m], frozen, block, eps) for m in MODALITIES}
            hidden = stg_cma_exchange(
                {m: bottleneck_down(ffn[m].flatten(-3, -2), adapters, f"{adapted}.global_adapters.{m}")
                 for m in MODALITIES}, adapters, adapted)  # over all H·W tokens of the segment
            x = {m: x[m] + ffn[m] + linear(hidden[m], adapters, f"{adapted}.global_adapters.{m}.up").unflatten(
                -2, (height, width)) for m in MODALITIES}
            k += 1
    out = {}
    for m in MODALITIES:
        normed = layer_norm(x[m].flatten(-3, -2), frozen, "norm", eps)  # (B, T, N, C)
        out[m], out[f"{m}_tokens"] = normed.mean(2), normed
    return out


# --- DG-SCT's adapter --------------------------------------------------------------------------------------------

def batch_norm_over_tokens(x: torch.Tensor, w: Weights, name: str, training: bool, eps: float = 1e-5) -> torch.Tensor:
    """BatchNorm of each channel of x (S, N, C) over all S·N token positions: the batch's mean and biased
    variance in training, the running statistics in evaluation."""
    if training:
        mean = x.mean((0, 1))
        var = (x - mean).pow(2).mean((0, 1))
    else:
        mean, var = w[f"{name}.running_mean"], w[f"{name}.running_var"]
    return (x - mean) / torch.sqrt(var + eps) * w[f"{name}.weight"] + w[f"{name}.bias"]


def grouped_pointwise(x: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
    """A grouped 1×1 convolution over tokens without bias: x (S, N, C_in), weight (C_out, C_in/groups, 1);
    output channels of group g read only input channels of group g."""
    outs = weight.shape[0] // groups
    parts = x.chunk(groups, dim=-1)
    return torch.cat([part @ weight[g * outs:(g + 1) * outs, :, 0].T for g, part in enumerate(parts)], dim=-1)


def lavish_bottleneck(x: torch.Tensor, w: Weights, name: str, *, groups: int, batch_norm: bool, training: bool,
                      norm_before: bool = True) -> torch.Tensor:
    """LAVISH's bottleneck: [LN] → grouped 1×1 down (no bias) → [BN] → ReLU → grouped 1×1 up (no bias) → [BN] → LN."""
    h = layer_norm(x, w, f"{name}.norm_before", 1e-5) if norm_before else x
    h = grouped_pointwise(h, w[f"{name}.down.weight"], groups)
    if batch_norm:
        h = batch_norm_over_tokens(h, w, f"{name}.down_norm", training)
    h = grouped_pointwise(torch.relu(h), w[f"{name}.up.weight"], groups)
    if batch_norm:
        h = batch_norm_over_tokens(h, w, f"{name}.up_norm", training)
    return layer_norm(h, w, f"{name}.norm_after", 1e-5)


def align_other(other: torch.Tensor, w: Weights, name: str, *, alignment: str, own_grid: tuple[int, int],
                own_prefix: int, other_grid: tuple[int, int], other_prefix: int) -> torch.Tensor:
    """Ŷ: the other modality's tokens Y (S, N_o, D_o) brought to this one's (S, N, D).

    ``conv``: a 1×1 convolution whose channels are the tokens, Ŷ[n] = Σ_o K[n, o]·Y[o] + k[n], then Linear
    D_o → D. ``resize``: Linear D_o → D, then the token grid resized bicubically to this grid; a class position
    takes the other side's projected class token, or the mean of the resized grid where the other has none.
    """
    if alignment == "conv":
        kernel, kernel_bias = w[f"{name}.token_mixing.weight"][..., 0], w[f"{name}.token_mixing.bias"]
        mixed = torch.einsum("no,sod->snd", kernel, other) + kernel_bias[:, None]
        return linear(mixed, w, f"{name}.projection")
    y = linear(other, w, f"{name}.projection")
    patches = y[:, other_prefix:].unflatten(1, other_grid).permute(0, 3, 1, 2)  # (S, D, h_o, w_o)
    if tuple(other_grid) != tuple(own_grid):
        patches = F.interpolate(patches, size=own_grid, mode="bicubic", align_corners=False)
    patches = patches.flatten(2).transpose(1, 2)  # (S, N, D)
    if not own_prefix:
        return patches
    cls = y[:, :1] if other_prefix else patches.mean(1, keepdim=True)
    return torch.cat([cls.expand(-1, own_prefix, -1), patches], dim=1)


def dg_sct_adapter(x: torch.Tensor, other: torch.Tensor, w: Weights, name: str, *, alignment: str,
                   own_grid: tuple[int, int], own_prefix: int, other_grid: tuple[int, int], other_prefix: int,
                   alpha: float, beta: float, groups: int, batch_norm: bool, training: bool,
                   num_frames: int, norm_before: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """One DG-SCT adapter of this modality's tokens X (S, N, D), S = B·T segments clip-major, guided by the other
    modality's tokens Y (S, N_o, D_o) of the same segments (the DG-SCT paper's adapter):

    1. Ŷ = align(Y); LAVISH's latent exchange: L̃ = L + softmax(L·Ŷᵀ)·Ŷ, X ← X + g_av·softmax(X·L̃ᵀ)·L̃;
    2. a = mean over tokens of Ŷ; channel map c = σ(W_c·ReLU(W_b·mean_N[ReLU(W_a1·a) ⊙ ReLU(W_v1·X)]));
       spatial logits s = W_s(ReLU(W_v2·(X ⊙ (1 + c))) ⊙ ReLU(W_a2·a)); X ← X ⊙ (α·c + β·σ(s) + 1 − α);
       pooling map P = softmax over tokens of tanh(s);
    3. where the adapter has one, the guided temporal attention of our design: z_t = mean over tokens of X_t,
       u_t = Σ_τ softmax_τ((W_q·a_t)·(W_k·z_τ)/√r)·z_τ over the T segments of the clip, X_t ← X_t + g_t·u_t;
    4. out = g·bottleneck(X).

    Returns (out (S, N, D), P (S, N)).
    """
    aligned = align_other(other, w, f"{name}.alignment", alignment=alignment, own_grid=own_grid,
                          own_prefix=own_prefix, other_grid=other_grid, other_prefix=other_prefix)
    latent = w[f"{name}.fusion.latent_tokens"].expand(x.shape[0], -1, -1)  # (S, m, D)
    latent = latent + attend(latent, aligned, aligned, 1.0)
    x = x + w[f"{name}.fusion.gate"] * attend(x, latent, latent, 1.0)
    summary = aligned.mean(1, keepdim=True)  # a, (S, 1, D)
    g = f"{name}.guidance"
    joint = torch.relu(linear(summary, w, f"{g}.other_channel")) * torch.relu(linear(x, w, f"{g}.own_channel"))
    channel = torch.sigmoid(linear(torch.relu(linear(joint.mean(1, keepdim=True), w, f"{g}.channel_squeeze")),
                                   w, f"{g}.channel_excite"))  # c, (S, 1, D)
    spatial = linear(torch.relu(linear(x * (1 + channel), w, f"{g}.own_spatial"))
                     * torch.relu(linear(summary, w, f"{g}.other_spatial")), w, f"{g}.spatial_logit")  # s, (S, N, 1)
    x = x * (alpha * channel + beta * torch.sigmoid(spatial) + 1 - alpha)
    pooling = softmax(torch.tanh(spatial[..., 0]))
    if f"{name}.temporal.gate" in w:
        x = x.unflatten(0, (-1, num_frames))  # (B, T, N, D)
        per_segment = x.mean(2)  # z, (B, T, D)
        query = linear(summary[:, 0].unflatten(0, (-1, num_frames)), w, f"{name}.temporal.query")  # (B, T, r)
        key = linear(per_segment, w, f"{name}.temporal.key")
        context = attend(query, key, per_segment, query.shape[-1] ** -0.5)  # (B, T, D)
        x = (x + w[f"{name}.temporal.gate"] * context[:, :, None]).flatten(0, 1)
    out = lavish_bottleneck(x, w, f"{name}.bottleneck", groups=groups, batch_norm=batch_norm, training=training,
                            norm_before=norm_before)
    return w[f"{name}.gate"] * out, pooling


# --- AV-STFP -----------------------------------------------------------------------------------------------------

def av_stfp_vit(video: torch.Tensor, audio: torch.Tensor, frozen: Weights, prompts: Weights, *, heads: int,
                depth: int, eps: float, video_grid: tuple[int, int], timeline: str,
                prompt_attention: str = "gated") -> dict[str, torch.Tensor]:
    """AV-STFP on a ViT shared by both streams, per our design's description (no public code exists).

    Layer l, stream m, segment t of clip b. The clip's timeline: for τ = 1…T, class_τ − class_t + e_τ
    (``differences``) or class_τ + e_τ (``class_tokens``), with e the layer's learnt time codes and the class
    tokens those entering the layer.

    ``gated``: the frozen attention of the segment's tokens [class; patches] and of the layer's fusion tokens Q_m
    (queries only, where the layer has them) over [class; patches], plus, per head h, g_s[h] × (the same queries
    over the spatial prompts P_m) + g_t[h] × (over the timeline) + g_f[h] × (over the other stream's fusion-token
    outputs O_other of layer l − 1), each in a softmax of its own, every key/value through the frozen norm1 and
    projections; then the output projection, the residual, the frozen FFN. Q_m's outputs are handed over.

    ``shared``: the sequence [class; P_m; Q_m + g_m·O_other; patches] reads itself and the timeline in one softmax
    of the frozen attention; the timeline gets no output of its own; prompt outputs are dropped after the layer.

    Returns per stream the frozen final LayerNorm's class token ``{m}`` (B, T, D) and patch tokens.
    """
    x = {"video": vit_video_tokens(video, frozen), "audio": vit_audio_tokens(audio, frozen, video_grid)}
    if "norm_pre.weight" in frozen:
        x = {m: layer_norm(v, frozen, "norm_pre", eps) for m, v in x.items()}
    handed_over: dict[str, torch.Tensor] = {}
    for i in range(depth):
        block, layer = f"blocks.{i}", f"layers.{i}"
        outputs = {}
        for m in MODALITIES:
            b, t, length, d = x[m].shape
            classes = x[m][:, :, 0]  # (B, T, D)
            line = classes[:, None, :, :].expand(b, t, t, d)  # [b, t, τ] = class_τ
            if timeline == "differences":
                line = line - classes[:, :, None, :]
            line = line + prompts[f"{layer}.time_codes.{m}"]  # + e_τ
            spatial = prompts[f"{layer}.spatial.{m}"].expand(b, t, -1, -1)
            fusion = prompts.get(f"{layer}.fusion.{m}")
            if prompt_attention == "gated":
                queries = x[m] if fusion is None else torch.cat([x[m], fusion.expand(b, t, -1, -1)], dim=2)
                normed = layer_norm(queries, frozen, f"{block}.norm1", eps)
                gated = [(layer_norm(spatial, frozen, f"{block}.norm1", eps), prompts[f"{layer}.spatial_gates.{m}"]),
                         (layer_norm(line, frozen, f"{block}.norm1", eps), prompts[f"{layer}.temporal_gates.{m}"])]
                if OTHER[m] in handed_over:
                    gated.append((layer_norm(handed_over[OTHER[m]], frozen, f"{block}.norm1", eps),
                                  prompts[f"{layer}.fusion_gates.{m}"]))
                seq = queries + multi_head_attention(normed, normed[:, :, :length], frozen, f"{block}.attn", heads,
                                                     gated=tuple(gated))
                seq = seq + vit_ffn(seq, frozen, block, eps)
                if fusion is not None:
                    outputs[m] = seq[:, :, length:]
                x[m] = seq[:, :, :length]
                continue
            fusion = fusion.expand(b, t, -1, -1)
            if OTHER[m] in handed_over:
                fusion = fusion + prompts[f"{layer}.fusion_gates.{m}"] * handed_over[OTHER[m]]
            seq = torch.cat([x[m][:, :, :1], spatial, fusion, x[m][:, :, 1:]], dim=2)  # (B, T, L, D)
            queries = layer_norm(seq, frozen, f"{block}.norm1", eps)
            keys_values = layer_norm(torch.cat([seq, line], dim=2), frozen, f"{block}.norm1", eps)
            seq = seq + multi_head_attention(queries, keys_values, frozen, f"{block}.attn", heads)
            seq = seq + vit_ffn(seq, frozen, block, eps)
            first_fusion, first_patch = 1 + spatial.shape[2], 1 + spatial.shape[2] + fusion.shape[2]
            outputs[m] = seq[:, :, first_fusion:first_patch]
            x[m] = torch.cat([seq[:, :, :1], seq[:, :, first_patch:]], dim=2)
        handed_over = outputs
    out = {}
    for m in MODALITIES:
        normed = layer_norm(x[m], frozen, "norm", eps)
        out[m], out[f"{m}_tokens"] = normed[:, :, 0], normed[:, :, 1:]
    return out


def dg_sct_vit(video: torch.Tensor, audio: torch.Tensor, frozen: Weights, adapters: Weights, *, heads: int,
               depth: int, eps: float, video_grid: tuple[int, int], audio_grid: tuple[int, int],
               **adapter_options) -> dict[str, torch.Tensor]:
    """DG-SCT with both streams through one ViT, every block paired with itself, four adapters per block:

      p1 = adapters₁(v, a), both from the states entering the block;
      v ← v + A(v) + p1_v;      a ← frozen block(a) + p1_a;
      p2 = adapters₂(v, a) from the updated states;
      v ← v + F(v) + p2_v;      a ← a + p2_a.

    Per-segment vectors: the frozen final LayerNorm's tokens (class token included) pooled by the pooling maps
    of the last block's p2 adapters. ``adapter_options``: :func:`dg_sct_adapter`'s but the token layouts.
    Returns ``{m}`` (B, T, D) and the normed patch tokens ``{m}_tokens``.
    """
    b, t = video.shape[:2]
    x = {"video": vit_video_tokens(video, frozen), "audio": vit_audio_tokens(audio, frozen, video_grid)}
    if "norm_pre.weight" in frozen:
        x = {m: layer_norm(v, frozen, "norm_pre", eps) for m, v in x.items()}
    v, a = x["video"].flatten(0, 1), x["audio"].flatten(0, 1)  # (B*T, 1 + N, D), segments clip-major
    layouts = {"video": {"own_grid": video_grid, "other_grid": audio_grid},
               "audio": {"own_grid": audio_grid, "other_grid": video_grid}}

    def adapter(name: str, modality: str, own: torch.Tensor, other: torch.Tensor):
        return dg_sct_adapter(own, other, adapters, name, own_prefix=1, other_prefix=1, **layouts[modality],
                              **adapter_options)

    pooling = {}
    for i in range(depth):
        block = f"blocks.{i}"
        p_video, _ = adapter(f"{block}.attention_adapters.video", "video", v, a)
        p_audio, _ = adapter(f"{block}.attention_adapters.audio", "audio", a, v)
        v = v + vit_attention(v, frozen, block, heads, eps) + p_video
        a = a + vit_attention(a, frozen, block, heads, eps)
        a = a + vit_ffn(a, frozen, block, eps) + p_audio
        p_video, pooling["video"] = adapter(f"{block}.ffn_adapters.video", "video", v, a)
        p_audio, pooling["audio"] = adapter(f"{block}.ffn_adapters.audio", "audio", a, v)
        v = v + vit_ffn(v, frozen, block, eps) + p_video
        a = a + p_audio
    out = {}
    for m, tokens in (("video", v), ("audio", a)):
        normed = layer_norm(tokens, frozen, "norm", eps)  # (B*T, 1 + N, D)
        out[m] = (pooling[m][..., None] * normed).sum(1).unflatten(0, (b, t))
        out[f"{m}_tokens"] = normed[:, 1:].unflatten(0, (b, t))
    return out

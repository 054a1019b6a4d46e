"""The methods' equations against plain implementations: STG-CMA on a ViT and on a Swin, DG-SCT's adapter and its
paired blocks, AV-STFP's prompted layers.

Why: identity at initialisation, parameter counts and shape checks all pass whatever a block computes once its
adapters have trained; swapped gates, segments grouped into the wrong temporal sequences or a misplaced residual
would survive them. Here every adapter weight, gate, prompt and embedding (and every frozen weight) is set to
random non-zero values, and avadapt's per-segment vectors and final token maps, and the gradients of all its
trainable parameters, are compared with ``tests/plain_equations.py``: an independent plain-PyTorch
implementation written from the papers (STG-CMA's spatial, temporal and global adaptation with its reference
code; DG-SCT's alignment, latent exchange, dual guidance and bottleneck) and from AV-STFP's design text, which
imports nothing of avadapt and shares only the weights, copied by state-dict name. Every comparison runs in
train and eval mode (train: STG-CMA's stochastic depth with a mask the test supplies, DG-SCT's BatchNorm on
batch statistics), on the CPU fast path and under ``kernels.plain_pytorch()``, in fp32, to 1e-5.

Each method also shows that its comparison can fail: the model is mutated (two gates' values swapped, or the
clips' segments regrouped time-major where the model groups them clip-major) and the comparison must then miss
by far more than the tolerance.
"""

from __future__ import annotations

import ast
import contextlib
import math
from pathlib import Path

import pytest
import torch
from torch import nn

import avadapt
from avadapt import kernels
from avadapt.backbones import AudioEmbeddingConfig
from avadapt.layers.residual import StochasticDepth
from avadapt.methods.av_stfp.model import AVSTFP
from avadapt.methods.dg_sct import DGSCTConfig, TokenLayout
from avadapt.methods.dg_sct.modules import DGSCTAdapter, GuidedTemporalAttention
from avadapt.methods.stg_cma import modules as stg_cma_modules
from avadapt.methods.stg_cma import swin as stg_cma_swin
from tests import plain_equations as plain
from tests.zoo import SWIN_KWARGS, TINY_BACKBONES

pytestmark = pytest.mark.usefixtures("one_thread")

FRAMES, BATCH = 3, 2
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}
MUTATION_MISS = 1e-3  # a mutated model must miss the plain result by at least this much
# A CLIP-like tiny ViT: 64 wide, 2 heads, 2 blocks, a pre-norm; 4×4 patches per frame, and a 2×3 audio grid that
# takes the centre of the 4×4 position grid (crop, not interpolation).
VIT_OPTIONS = {"img_size": 64, "depth": 2, "pre_norm": True,
               "audio": AudioEmbeddingConfig(num_mel_bins=32, num_frames=48)}
VIDEO_GRID, AUDIO_GRID = (4, 4), (2, 3)
PATHS = ("fast", "plain")
MODES = ("train", "eval")


# --- shared helpers ----------------------------------------------------------------------------------------------

def randomize_(module: nn.Module, seed: int, gain: float = 1.0) -> None:
    """Every parameter (and BatchNorm statistic) of ``module`` random and non-zero: Linear/conv weights of
    unit gain, biases ±0.1, norms' affines around (1, 0), running variances in [0.5, 1.5], scalar gates of
    magnitude 0.4–1.2 and random sign, anything else (embeddings, prompts, tables, latent tokens) N(0, 1/width)."""
    g = torch.Generator().manual_seed(seed)

    def normal(shape, std=1.0, mean=0.0):
        return mean + std * torch.randn(shape, generator=g)

    with torch.no_grad():
        for module_ in module.modules():
            for name, p in module_.named_parameters(recurse=False):
                if isinstance(module_, (nn.LayerNorm, nn.BatchNorm1d)):
                    p.copy_(normal(p.shape, 0.3, 1.0 if name == "weight" else 0.0))
                elif isinstance(module_, (nn.Linear, nn.Conv1d, nn.Conv2d)) and name == "weight":
                    p.copy_(normal(p.shape, gain / math.sqrt(p[0].numel())))
                elif isinstance(module_, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                    p.copy_(normal(p.shape, 0.1))
                elif p.numel() == 1:
                    sign = 1.0 if torch.rand((), generator=g) < 0.5 else -1.0
                    p.fill_(sign * (0.4 + 0.8 * torch.rand((), generator=g).item()))
                else:  # rows of about unit length: unscaled dot products of tokens stay well conditioned in fp32
                    p.copy_(normal(p.shape, 1 / math.sqrt(p.shape[-1])))
            if isinstance(module_, nn.BatchNorm1d):
                module_.running_mean.copy_(normal(module_.running_mean.shape, 0.3))
                module_.running_var.copy_(0.5 + torch.rand(module_.running_var.shape, generator=g))


def method_weights(module: nn.Module, skip: tuple[str, ...] = ("backbone.", "audio_encoder.")) -> dict:
    """The module's own state (parameters and buffers, frozen backbones left out) by name, as float64 copies for
    the plain implementation; copies of trainable parameters take gradients."""
    trainable = {name for name, p in module.named_parameters() if p.requires_grad}
    return {name: double(t).requires_grad_(name in trainable)
            for name, t in module.state_dict().items() if not name.startswith(skip)}


def frozen_weights(timm_model: nn.Module) -> dict:
    return {name: double(t) for name, t in timm_model.state_dict().items()}


def double(t: torch.Tensor) -> torch.Tensor:
    """A detached float64 copy (integers as they are): the plain implementation computes in float64, so what the
    comparison measures is avadapt's own fp32 error."""
    t = t.detach().clone()
    return t.double() if t.is_floating_point() else t


def path_context(path: str):
    return kernels.plain_pytorch() if path == "plain" else contextlib.nullcontext()


def inputs(image: int, audio_shape: tuple[int, int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(BATCH, FRAMES, 3, image, image, generator=g),
            torch.randn(BATCH, FRAMES, 1, *audio_shape, generator=g))


def probe_loss(outputs: dict[str, torch.Tensor], seed: int = 5) -> torch.Tensor:
    """A fixed random linear function of the compared outputs, whose gradients are compared."""
    g = torch.Generator().manual_seed(seed)
    return sum((value * torch.randn(value.shape, generator=g)).sum() for _, value in sorted(outputs.items()))


def as_outputs(features) -> dict[str, torch.Tensor]:
    """avadapt's features in the plain implementation's names: per-segment vectors and the last token maps."""
    return {"video": features.video, "audio": features.audio,
            "video_tokens": features.video_maps[-1], "audio_tokens": features.audio_maps[-1]}


def largest_miss(ours: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> float:
    return max((ours[k] - expected[k]).abs().max().item() for k in expected)


def assert_same(ours: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert ours.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(ours[key], value.to(ours[key].dtype), **TOLERANCE, msg=lambda m, k=key: f"{k}: {m}")


def assert_same_gradients(module: nn.Module, plain_weights: dict) -> None:
    """Every trainable parameter's gradient against the plain one, entry by entry, within 1e-5 of the largest
    gradient entry of the module (at least 1): a gradient is a sum over every token of the batch, and a scalar
    gate's terms cancel to a small total, so fp32 rounding is relative to the terms, not to that total. A
    parameter that gets no gradient (layer 0's fusion gates: nothing is handed over yet) must get none in the
    plain implementation either."""
    named = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
    assert named, "nothing to compare"
    scale = max([1.0] + [plain_weights[name].grad.abs().max().item() for name, _ in named
                         if plain_weights[name].grad is not None])
    for name, p in named:
        expected = plain_weights[name].grad
        if p.grad is None or expected is None:
            assert p.grad is None and (expected is None or not expected.any()), name
            continue
        torch.testing.assert_close(p.grad, expected.to(p.grad.dtype), rtol=0, atol=TOLERANCE["atol"] * scale,
                                   msg=lambda m, n=name: f"{n}: {m}")


def regrouped_time_major(function, positions):
    """``function`` called on rows regrouped as if the (B·T, …) tensors at ``positions`` were laid out
    time-major (t, b) instead of clip-major (b, t), its outputs put back: the time axis laid out wrongly."""
    def mutated(*args, num_frames: int, **kwargs):
        args = list(args)
        rows = next(args[i].shape[0] for i in positions if args[i] is not None)
        order = torch.arange(rows).view(-1, num_frames).T.reshape(-1)
        for i in positions:
            if args[i] is not None:
                args[i] = args[i][order]
        out = function(*args, **kwargs)
        back = order.argsort()
        return tuple(o[back] if o is not None else None for o in out) if isinstance(out, tuple) else out[back]
    return mutated


def test_plain_implementations_import_nothing_of_avadapt():
    tree = ast.parse(Path(plain.__file__).read_text())
    imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    imported += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert imported and not [name for name in imported if name.split(".")[0] in ("avadapt", "tests", "timm")]


# --- STG-CMA -----------------------------------------------------------------------------------------------------

def drop_mask(rate: float, shape: tuple[int, ...]) -> torch.Tensor:
    """Stochastic depth's factors for one block and modality, a function of the rate and the (B, N) shape only,
    so the model and the plain implementation draw the same mask without sharing a random stream."""
    g = torch.Generator().manual_seed(round(rate * 1000) + 7919 * shape[-1] + 104729 * shape[0])
    keep = 1 - rate
    mask = (torch.rand(shape, generator=g) < keep).float() / keep
    assert (mask == 0).any() and (mask > 0).any(), "the mask must drop some positions and keep others"
    return mask


@pytest.fixture
def supplied_drop_masks(monkeypatch):
    """StochasticDepth draws :func:`drop_mask` for the shape it is asked for: (B, N) per token position and clip
    where the time axis is laid out right."""
    def sample_mask(self, x, sample_dims=1):
        if not self.training or self.rate == 0:
            return None
        shape = tuple(x.shape[:sample_dims])
        return drop_mask(self.rate, shape).view(*shape, *(1,) * (x.dim() - sample_dims))

    monkeypatch.setattr(StochasticDepth, "sample_mask", sample_mask)


def swin_stages(kwargs: dict) -> list[dict]:
    """The stage layout the frozen Swin runs, from its options: the grid halves per stage; a window no larger
    than the grid, and no shift where the grid is one window."""
    grid = kwargs["img_size"] // 4
    stages = []
    for depth, heads in zip(kwargs["depths"], kwargs["num_heads"]):
        window = min(grid, kwargs["window_size"])
        shift = window // 2 if grid > window else 0
        stages.append({"depth": depth, "heads": heads, "window": window, "shift": shift})
        grid //= 2
    return stages


def build_stg_cma(family: str, **options) -> avadapt.AVModel:
    torch.manual_seed(0)
    if family == "vit":
        model = avadapt.create_model(backbone="test_vit", method="stg_cma", task="ave", backbone_options=VIT_OPTIONS,
                                     num_frames=FRAMES, ratio="1/4", drop_path=0.5, **options)
    else:
        name, swin_options = TINY_BACKBONES["swin"]
        model = avadapt.create_model(backbone=name, method="stg_cma", task="ave", backbone_options=swin_options,
                                     num_frames=FRAMES, ratio="1/4", drop_path=0.5, **options)
    randomize_(model.method, seed=1)  # frozen weights, adapters, gates, temporal embeddings / tables, final norm
    return model


def stg_cma_inputs(family: str) -> tuple[torch.Tensor, torch.Tensor]:
    if family == "vit":
        return inputs(VIT_OPTIONS["img_size"], (32, 48))
    return inputs(SWIN_KWARGS["img_size"], (SWIN_KWARGS["img_size"],) * 2)


def plain_stg_cma(family: str, model: avadapt.AVModel, video: torch.Tensor, audio: torch.Tensor, adapters: dict,
                  training: bool) -> dict[str, torch.Tensor]:
    timm_model = model.method.backbone.model
    frozen, mask = frozen_weights(timm_model), drop_mask if training else None
    video, audio = video.double(), audio.double()
    if family == "vit":
        return plain.stg_cma_vit(video, audio, frozen, adapters, heads=timm_model.blocks[0].attn.num_heads,
                                 depth=len(timm_model.blocks), eps=timm_model.norm.eps, video_grid=VIDEO_GRID,
                                 drop_path=0.5, drop_mask=mask)
    return plain.stg_cma_swin(video, audio, frozen, adapters, stages=swin_stages(SWIN_KWARGS),
                              eps=timm_model.norm.eps, drop_path=0.5, drop_mask=mask)


@pytest.mark.usefixtures("supplied_drop_masks")
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("family", ["vit", "swin"])
def test_stg_cma_matches_its_equations(family, mode, path):
    model = build_stg_cma(family).train(mode == "train")
    video, audio = stg_cma_inputs(family)
    adapters = method_weights(model.method)
    expected = plain_stg_cma(family, model, video, audio, adapters, training=mode == "train")
    with path_context(path):
        assert kernels.cpu_fast_path(video) == (path == "fast")
        ours = as_outputs(model.features(video, audio))
        probe_loss(ours).backward()
    probe_loss(expected).backward()
    assert_same(ours, expected)
    assert_same_gradients(model.method, adapters)
    if mode == "train":  # the supplied masks drop something: training is not evaluation here
        with torch.no_grad():
            evaluated = plain_stg_cma(family, model, video, audio, adapters, training=False)
        assert largest_miss(expected, evaluated) > MUTATION_MISS


@pytest.mark.usefixtures("supplied_drop_masks")
@pytest.mark.parametrize("options", [{"recompute_frozen": True}, {"activation_checkpointing": True}],
                         ids=["recompute_frozen", "activation_checkpointing"])
@pytest.mark.parametrize("family", ["vit", "swin"])
def test_stg_cma_memory_savers_keep_its_equations(family, options):
    """Recomputing frozen activations, or whole blocks, in backward changes what is stored, not what is computed."""
    model = build_stg_cma(family, **options).train()
    video, audio = stg_cma_inputs(family)
    adapters = method_weights(model.method)
    expected = plain_stg_cma(family, model, video, audio, adapters, training=True)
    ours = as_outputs(model.features(video, audio))
    probe_loss(ours).backward()
    probe_loss(expected).backward()
    assert_same(ours, expected)
    assert_same_gradients(model.method, adapters)


@pytest.mark.parametrize("family", ["vit", "swin"])
def test_stg_cma_comparison_fails_with_swapped_gates(family):
    model = build_stg_cma(family).eval()
    video, audio = stg_cma_inputs(family)
    with torch.no_grad():
        expected = plain_stg_cma(family, model, video, audio, method_weights(model.method), training=False)
        assert largest_miss(as_outputs(model.features(video, audio)), expected) < TOLERANCE["atol"]
        for block in model.method.blocks:
            video_gate = block.gates.video_gate.clone()
            block.gates.video_gate.copy_(block.gates.audio_gate)
            block.gates.audio_gate.copy_(video_gate)
        assert largest_miss(as_outputs(model.features(video, audio)), expected) > MUTATION_MISS


@pytest.mark.parametrize("family", ["vit", "swin"])
def test_stg_cma_comparison_fails_with_the_time_axis_laid_out_time_major(family, monkeypatch):
    model = build_stg_cma(family).eval()
    video, audio = stg_cma_inputs(family)
    with torch.no_grad():
        expected = plain_stg_cma(family, model, video, audio, method_weights(model.method), training=False)
        assert largest_miss(as_outputs(model.features(video, audio)), expected) < TOLERANCE["atol"]
        module = stg_cma_modules if family == "vit" else stg_cma_swin
        along_time = module.along_time

        def time_major(fn, tokens, num_frames, **kwargs):
            return regrouped_time_major(lambda tokens: along_time(fn, tokens, num_frames, **kwargs), (0,))(
                tokens, num_frames=num_frames)

        monkeypatch.setattr(module, "along_time", time_major)
        assert largest_miss(as_outputs(model.features(video, audio)), expected) > MUTATION_MISS


# --- DG-SCT ------------------------------------------------------------------------------------------------------

# Adapter settings, each an explicit set of options over a preset, so a preset that changes later does not
# change what a case checks: the official AVE, AVQA and MS3 constants, S4's grid-resize alignment (from a plain
# grid into a layout with a class token and back), and the guided temporal attention of our design.
DG_SCT_CASES = {
    "ave": {"preset": "ave"},
    "avqa": {"preset": "avqa"},
    "ms3_constants": {"preset": "ave", "alpha": 0.2, "beta": 0.1, "ratio": "1/2", "batch_norm": False},
    "resize_to_class_token": {"preset": "ave", "alignment": "resize", "batch_norm": False},
    "resize_from_class_token": {"preset": "ave", "alignment": "resize", "batch_norm": False},
    "temporal_in_adapter": {"preset": "ave", "temporal": "adapter"},
}
CLASS_TOKENS = {"resize_to_class_token": (1, 0), "resize_from_class_token": (0, 1)}  # (own, other); else none


def bottleneck_layout(config: DGSCTConfig) -> dict:
    """The plain bottleneck's layout for ``config``: LAVISH's (LayerNorm first) for every option this
    configuration has; a layout option of DG-SCT's maps onto ``plain.lavish_bottleneck``'s arguments here."""
    return {"norm_before": True}


def adapter_options(config: DGSCTConfig, training: bool) -> dict:
    return {"alignment": config.alignment, "alpha": config.alpha, "beta": config.beta, "groups": config.conv_groups,
            "batch_norm": config.batch_norm, "training": training, "num_frames": FRAMES,
            **bottleneck_layout(config)}


def build_adapter(case: str) -> tuple[DGSCTAdapter, DGSCTConfig, TokenLayout, TokenLayout]:
    config = DGSCTConfig(num_frames=FRAMES, **DG_SCT_CASES[case])
    own_prefix, other_prefix = CLASS_TOKENS.get(case, (0, 0))
    own, other = TokenLayout((3, 4), 32, own_prefix), TokenLayout((2, 3), 16, other_prefix)  # other grid and width
    torch.manual_seed(0)
    adapter = DGSCTAdapter(own, other, config, num_frames=FRAMES)
    randomize_(adapter, seed=3)
    return adapter, config, own, other


def adapter_inputs(own: TokenLayout, other: TokenLayout) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(4)
    return (torch.randn(BATCH * FRAMES, own.count, own.dim, generator=g),
            torch.randn(BATCH * FRAMES, other.count, other.dim, generator=g))


def plain_adapter(x, other, weights, config, own, other_layout, training):
    return plain.dg_sct_adapter(x.double(), other.double(), weights, "adapter", own_grid=own.grid,
                                own_prefix=own.prefix, other_grid=other_layout.grid,
                                other_prefix=other_layout.prefix, **adapter_options(config, training))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", sorted(DG_SCT_CASES))
def test_dg_sct_adapter_matches_its_equations(case, mode, path):
    adapter, config, own, other_layout = build_adapter(case)
    adapter.train(mode == "train")
    weights = {f"adapter.{name}": t for name, t in method_weights(adapter, skip=()).items()}
    x, other = adapter_inputs(own, other_layout)
    expected_out, expected_pooling = plain_adapter(x, other, weights, config, own, other_layout, mode == "train")
    with path_context(path):
        out, pooling = adapter(x, other)
        probe_loss({"out": out, "pooling": pooling}).backward()
    probe_loss({"out": expected_out, "pooling": expected_pooling}).backward()
    assert_same({"out": out, "pooling": pooling}, {"out": expected_out, "pooling": expected_pooling})
    assert_same_gradients(adapter, {name.removeprefix("adapter."): t for name, t in weights.items()})


def test_dg_sct_comparison_fails_with_swapped_gates():
    adapter, config, own, other_layout = build_adapter("ave")
    adapter.eval()
    weights = {f"adapter.{name}": t for name, t in method_weights(adapter, skip=()).items()}
    x, other = adapter_inputs(own, other_layout)
    with torch.no_grad():
        expected, _ = plain_adapter(x, other, weights, config, own, other_layout, training=False)
        assert (adapter(x, other)[0] - expected).abs().max() < TOLERANCE["atol"]
        latent_gate = adapter.fusion.gate.clone()
        adapter.fusion.gate.copy_(adapter.gate)
        adapter.gate.copy_(latent_gate)
        assert (adapter(x, other)[0] - expected).abs().max() > MUTATION_MISS


def test_dg_sct_comparison_fails_with_the_time_axis_laid_out_time_major(monkeypatch):
    adapter, config, own, other_layout = build_adapter("temporal_in_adapter")
    adapter.eval()
    weights = {f"adapter.{name}": t for name, t in method_weights(adapter, skip=()).items()}
    x, other = adapter_inputs(own, other_layout)
    with torch.no_grad():
        expected, _ = plain_adapter(x, other, weights, config, own, other_layout, training=False)
        assert (adapter(x, other)[0] - expected).abs().max() < TOLERANCE["atol"]
        forward = GuidedTemporalAttention.forward

        def time_major(self, x, summary):
            return regrouped_time_major(lambda x, summary: forward(self, x, summary), (0, 1))(
                x, summary, num_frames=self.num_frames)

        monkeypatch.setattr(GuidedTemporalAttention, "forward", time_major)
        assert (adapter(x, other)[0] - expected).abs().max() > MUTATION_MISS


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", ["temporal_in_adapter"])
def test_dg_sct_paired_blocks_match_their_equations(case, mode, path):
    """Both streams through one ViT: p1 from the states entering a block, p2 from the updated ones, the whole
    frozen block on the audio side, features pooled by the last adapters' maps."""
    config = DG_SCT_CASES[case]
    torch.manual_seed(0)
    model = avadapt.create_model(backbone="test_vit", method="dg_sct", task="ave", backbone_options=VIT_OPTIONS,
                                 num_frames=FRAMES, **config)
    # Half gain: the latent exchange is an unscaled dot-product attention on the raw residual stream; at unit gain
    # its logits reach the hundreds in the second block, where fp32 rounding alone moves the output by 1e-4.
    randomize_(model.method, seed=1, gain=0.5)  # frozen weights included
    model.train(mode == "train")
    timm_model = model.method.backbone.model
    adapters = method_weights(model.method)
    video, audio = inputs(VIT_OPTIONS["img_size"], (32, 48))
    expected = plain.dg_sct_vit(video.double(), audio.double(), frozen_weights(timm_model), adapters,
                                heads=timm_model.blocks[0].attn.num_heads, depth=len(timm_model.blocks),
                                eps=timm_model.norm.eps, video_grid=VIDEO_GRID, audio_grid=AUDIO_GRID,
                                **adapter_options(model.method.config, mode == "train"))
    with path_context(path):
        ours = as_outputs(model.features(video, audio))
        probe_loss(ours).backward()
    probe_loss(expected).backward()
    assert_same(ours, expected)
    assert_same_gradients(model.method, adapters)


# --- AV-STFP -----------------------------------------------------------------------------------------------------

def build_av_stfp(**options) -> avadapt.AVModel:
    torch.manual_seed(0)
    model = avadapt.create_model(backbone="test_vit", method="av_stfp", task="ave", backbone_options=VIT_OPTIONS,
                                 num_frames=FRAMES, num_spatial_prompts=2, num_fusion_prompts=2, **options)
    randomize_(model.method, seed=1)  # frozen weights included
    return model


def plain_av_stfp(model: avadapt.AVModel, video: torch.Tensor, audio: torch.Tensor, prompts: dict):
    timm_model = model.method.backbone.model
    return plain.av_stfp_vit(video.double(), audio.double(), frozen_weights(timm_model), prompts,
                             heads=timm_model.blocks[0].attn.num_heads, depth=len(timm_model.blocks),
                             eps=timm_model.norm.eps, video_grid=VIDEO_GRID, timeline=model.method.config.timeline,
                             prompt_attention=model.method.config.prompt_attention)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("timeline", ["differences", "class_tokens"])
@pytest.mark.parametrize("prompt_attention", ["gated", "shared"])
def test_av_stfp_matches_its_design(prompt_attention, timeline, mode, path):
    model = build_av_stfp(timeline=timeline, prompt_attention=prompt_attention).train(mode == "train")
    prompts = method_weights(model.method)
    video, audio = inputs(VIT_OPTIONS["img_size"], (32, 48))
    expected = plain_av_stfp(model, video, audio, prompts)
    with path_context(path):
        ours = as_outputs(model.features(video, audio))
        probe_loss(ours).backward()
    probe_loss(expected).backward()
    assert_same(ours, expected)
    assert_same_gradients(model.method, prompts)


def test_av_stfp_comparison_fails_with_swapped_gates():
    model = build_av_stfp().eval()
    video, audio = inputs(VIT_OPTIONS["img_size"], (32, 48))
    with torch.no_grad():
        expected = plain_av_stfp(model, video, audio, method_weights(model.method))
        assert largest_miss(as_outputs(model.features(video, audio)), expected) < TOLERANCE["atol"]
        for layer in model.method.layers:
            for gates in (layer.spatial_gates, layer.temporal_gates, layer.fusion_gates):
                if gates is not None:
                    video_gate = gates["video"].clone()
                    gates["video"].copy_(gates["audio"])
                    gates["audio"].copy_(video_gate)
        assert largest_miss(as_outputs(model.features(video, audio)), expected) > MUTATION_MISS


def test_av_stfp_comparison_fails_with_the_time_axis_laid_out_time_major(monkeypatch):
    model = build_av_stfp().eval()
    video, audio = inputs(VIT_OPTIONS["img_size"], (32, 48))
    with torch.no_grad():
        expected = plain_av_stfp(model, video, audio, method_weights(model.method))
        assert largest_miss(as_outputs(model.features(video, audio)), expected) < TOLERANCE["atol"]
        layer = AVSTFP._layer

        def time_major(self, handle, prompts, modality, x, received):
            return regrouped_time_major(
                lambda x, received: layer(self, handle, prompts, modality, x, received), (0, 1))(
                x, received, num_frames=self.num_frames)

        monkeypatch.setattr(AVSTFP, "_layer", time_major)
        assert largest_miss(as_outputs(model.features(video, audio)), expected) > MUTATION_MISS

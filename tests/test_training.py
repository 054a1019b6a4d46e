"""The training system on a tiny ViT and a synthetic AVE: optimiser, schedule, checkpoints, resume, precision."""

from __future__ import annotations

import itertools
import math
import pickle
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from PIL import Image

from avadapt.adapter_files import AdapterMismatchError, load_adapter, trainable_state_keys
from avadapt.data.datamodule import AVDataModule
from avadapt.data.fbank import FbankConfig
from avadapt.tasks.ave.synth import synthesize_ave
from avadapt.training import AdapterExport, AVAdaptModule, TrainingCurves, warmup_cosine_factor
from avadapt.training.callbacks import Curves, read_curves
from avadapt.types import ParameterGroup

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_FBANK = {"num_mel_bins": 32, "target_frames": 48}  # the vit front end's fbank at a tiny size
FBANK = FbankConfig(**TINY_FBANK)
NUM_CLASSES = 2


@pytest.fixture(scope="module")
def ave_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic_ave")
    synthesize_ave(root, clips=8, seed=0, num_classes=NUM_CLASSES, size=32)
    return root


def tiny_module(method: str = "stg_cma", **overrides) -> AVAdaptModule:
    torch.manual_seed(0)
    options = {"backbone": "test_vit", "method": method, "task": "ave",
               "task_options": {"num_classes": NUM_CLASSES + 1},
               "backbone_options": {"img_size": 32}, "fbank": TINY_FBANK, "lr": 1e-3, "min_lr": 1e-5,
               "warmup_epochs": 1}
    if method == "stg_cma":
        options["method_options"] = {"preset": "base"}
    options.update(overrides)
    return AVAdaptModule(**options)


def tiny_data(module: AVAdaptModule, root, batch_size: int = 2) -> AVDataModule:
    return AVDataModule(str(root), batch_size=batch_size, num_workers=0, preprocessing=module.preprocessing)


def tiny_trainer(tmp_path, **overrides) -> L.Trainer:
    options = {"accelerator": "cpu", "devices": 1, "precision": "32-true", "max_steps": 2, "limit_val_batches": 1,
               "limit_test_batches": 1, "num_sanity_val_steps": 0, "logger": False, "enable_progress_bar": False,
               "enable_model_summary": False, "default_root_dir": tmp_path}
    options.update(overrides)
    return L.Trainer(**options)


# ---- schedule and optimiser ---------------------------------------------------------------------------
def test_schedule_warms_up_linearly_from_zero_then_follows_a_cosine_to_min_lr():
    """lr 5e-5, floor 2e-6, 10 warm-up steps of 110; expected values worked out by hand:
    warm-up lr·s/10; then 2e-6 + 4.8e-5 · ½(1 + cos(π·(s − 10)/100))."""
    lr, min_lr, warmup, total = 5e-5, 2e-6, 10, 110
    values = [lr * warmup_cosine_factor(step, warmup, total, lr, min_lr) for step in range(total + 5)]
    assert values[0] == 0.0  # start
    assert values[5] == pytest.approx(2.5e-5)  # half-way through the warm-up
    assert values[10] == pytest.approx(5e-5)  # warm-up end: the peak
    assert values[35] == pytest.approx(4.2970563e-5)  # a quarter of the decay: ½(1 + cos π/4) = 0.8535534
    assert values[60] == pytest.approx(2.6e-5)  # middle of the decay: cos π/2 = 0, half-way between lr and floor
    assert values[109] == pytest.approx(2.0118426e-6)  # last step of the run: ½(1 + cos 0.99π) = 0.0002467
    assert values[110] == pytest.approx(2e-6)
    assert values[114] == pytest.approx(2e-6)  # stays at the floor past the planned end
    assert all(a >= b for a, b in itertools.pairwise(values[10:]))


def test_parameter_groups_put_the_head_at_a_tenth_of_the_lr():
    module = tiny_module(lr=5e-5, head_lr_factor=0.1)
    groups = {g["name"]: g for g in module.parameter_groups()}
    assert groups["method"]["lr"] == pytest.approx(5e-5)
    assert groups["head"]["lr"] == pytest.approx(5e-6)
    grouped = [id(p) for g in groups.values() for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in module.model.trainable_parameters())  # each once
    assert {id(p) for p in groups["head"]["params"]} == {id(p) for p in module.model.head.parameters()}


def test_av_stfp_prompts_train_at_their_lr_factor_and_fine_tuned_weights_at_the_base_lr():
    module = tiny_module("av_stfp", lr=2e-4, head_lr_factor=0.5, method_options={"prompt_lr_factor": 25})
    groups = {g["name"]: g for g in module.parameter_groups()}
    assert set(groups) == {"prompts", "head"}  # the frozen backbone's group is empty and left out
    assert groups["prompts"]["lr"] == pytest.approx(5e-3)  # 25 × 2e-4
    assert groups["head"]["lr"] == pytest.approx(1e-4)  # 0.5 × 2e-4
    # test_vit: 6 layers of width 64 with 2 heads; per layer and stream 10 time codes + 4 spatial + 1 fusion
    # token and a gate per head for each prompt type, less the last layer's fusion tokens and the first's gates
    assert sum(p.numel() for p in groups["prompts"]["params"]) == 6 * 2 * ((10 + 4 + 1) * 64 + 3 * 2) - 2 * (64 + 2)

    full = tiny_module("av_stfp", lr=2e-4, method_options={"prompt_lr_factor": 25, "full_finetune": True})
    groups = {g["name"]: g for g in full.parameter_groups()}
    assert groups["prompts"]["lr"] == pytest.approx(5e-3) and groups["backbone"]["lr"] == pytest.approx(2e-4)
    backbone = {id(p) for p in full.model.backbone.parameters()}
    assert {id(p) for p in groups["backbone"]["params"]} == backbone and backbone


def test_parameter_groups_that_miss_a_trainable_parameter_are_refused():
    module = tiny_module("av_stfp")
    method = module.model.method
    method.parameter_groups = lambda: [ParameterGroup("prompts", list(method.layers[0].parameters()))]
    with pytest.raises(ValueError, match="exactly once"):
        module.parameter_groups()


def fit_recording_lrs(module: AVAdaptModule, ave_root, tmp_path, epochs: int) -> tuple[L.Trainer, list[dict]]:
    """Fit ``epochs`` epochs of 2 steps (batches of 3) without validation; the learning rate of every parameter
    group, by name, at the start of each step."""
    seen: list[dict] = []

    class RecordLR(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append({g["name"]: g["lr"] for g in trainer.optimizers[0].param_groups})

    trainer = tiny_trainer(tmp_path, max_steps=-1, max_epochs=epochs, limit_train_batches=2, callbacks=[RecordLR()],
                           limit_val_batches=0)
    trainer.fit(module, datamodule=tiny_data(module, ave_root, batch_size=3))
    return trainer, seen


def test_optimizer_and_per_iteration_schedule_inside_lightning(tmp_path, ave_root):
    module = tiny_module(lr=1e-3, min_lr=1e-5, warmup_epochs=1.0, head_lr_factor=0.1)
    trainer, seen = fit_recording_lrs(module, ave_root, tmp_path, epochs=2)
    optimizer = trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.defaults["betas"] == (0.95, 0.999) and optimizer.defaults["weight_decay"] == 5e-7
    # 2 steps per epoch, warm-up 1 epoch = 2 steps, 4 steps in all: 0, half the peak, the peak, then half-way
    # down the cosine to the floor; both groups end at the same absolute floor, 1e-5
    assert [lrs["method"] for lrs in seen] == pytest.approx([0, 5e-4, 1e-3, 1e-5 + (1e-3 - 1e-5) / 2])
    assert [lrs["head"] for lrs in seen] == pytest.approx([0, 5e-5, 1e-4, 1e-5 + (1e-4 - 1e-5) / 2])
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1e-5, 1e-5])  # after the last step


def test_step_decay_multiplies_every_group_by_gamma_every_few_epochs(tmp_path, ave_root):
    """DG-SCT's StepLR(step_size, gamma) stepped per epoch: here every epoch (2 steps), gamma 0.5, no warm-up."""
    module = tiny_module(lr=1e-3, warmup_epochs=0.0, head_lr_factor=0.1, lr_decay="step", step_epochs=1.0,
                         step_gamma=0.5)
    _, seen = fit_recording_lrs(module, ave_root, tmp_path, epochs=3)
    assert [lrs["method"] for lrs in seen] == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4])
    assert [lrs["head"] for lrs in seen] == pytest.approx([1e-4, 1e-4, 5e-5, 5e-5, 2.5e-5, 2.5e-5])
    with pytest.raises(ValueError, match="lr_decay"):
        tiny_module(lr_decay="linear")


def test_prompt_lr_factor_reaches_the_optimiser_and_its_schedule(tmp_path, ave_root):
    """AV-STFP's prompts at 10 × lr = 1e-2: the same warm-up and cosine, from their own peak to the floor."""
    module = tiny_module("av_stfp", lr=1e-3, min_lr=1e-5, warmup_epochs=1.0, head_lr_factor=0.1,
                         method_options={"prompt_lr_factor": 10})
    _, seen = fit_recording_lrs(module, ave_root, tmp_path, epochs=2)
    assert [lrs["prompts"] for lrs in seen] == pytest.approx([0, 5e-3, 1e-2, 1e-5 + (1e-2 - 1e-5) / 2])
    assert [lrs["head"] for lrs in seen] == pytest.approx([0, 5e-5, 1e-4, 1e-5 + (1e-4 - 1e-5) / 2])


def test_every_trainable_parameter_gets_a_gradient(ave_root):
    """DDP needs no find_unused_parameters: every parameter that requires grad takes part in the loss."""
    for method, options in [("stg_cma", {}), ("probe", {})]:
        module = tiny_module(method, **options)
        data = tiny_data(module, ave_root)
        data.setup("fit")
        batch = next(iter(data.train_dataloader()))
        module.train()
        module.training_step(batch, 0).backward()
        unused = [n for n, p in module.named_parameters() if p.requires_grad and p.grad is None]
        assert not unused, f"{method}: {unused}"
        frozen_with_grad = [n for n, p in module.named_parameters() if not p.requires_grad and p.grad is not None]
        assert not frozen_with_grad
        # the frozen backbone stays in eval mode while the module trains
        assert not module.model.backbone.model.training


def test_audio_mixup_mixes_each_segment_with_its_mirror_in_training_steps_only(ave_root, monkeypatch):
    """audio_mixup_alpha: in a training step the model hears λ·a + (1 − λ)·a_mirror per segment (the batch's B·T
    segments in one list, mirrored as DG-SCT's flip of it), λ drawn per segment from the run's seed, epoch and
    batch; the targets are the batch's own; validation never mixes, and without the option nothing changes."""
    seen: list[torch.Tensor] = []

    def recording(module: AVAdaptModule):
        forward = module.model.forward

        def record(video, audio, **inputs):
            seen.append(audio.detach().clone())
            return forward(video, audio, **inputs)

        monkeypatch.setattr(module.model, "forward", record)
        return module

    module = recording(tiny_module(audio_mixup_alpha=0.5))
    data = tiny_data(module, ave_root, batch_size=4)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    module.train()
    torch.manual_seed(5)  # the same dropout below
    loss = module.training_step(batch, 0)
    module.training_step(batch, 0)
    module.training_step(batch, 1)
    a = batch.audio.flatten(0, 1)  # (B·T, 1, F, L)
    mirror = a.flip(0)
    mixed = seen[0].flatten(0, 1)
    difference = (a - mirror).flatten(1)
    lam = ((mixed - mirror).flatten(1) * difference).sum(1) / difference.square().sum(1)  # least squares, (B·T,)
    torch.testing.assert_close(mixed, lam.view(-1, 1, 1, 1) * a + (1 - lam.view(-1, 1, 1, 1)) * mirror,
                               rtol=0, atol=1e-4)
    assert ((lam > -1e-4) & (lam < 1 + 1e-4)).all() and lam.std() > 0.1  # one weight per segment
    assert torch.equal(seen[0], seen[1]) and not torch.allclose(seen[0], seen[2])  # seeded by the batch index
    with torch.no_grad():  # the labels are not mixed: the loss is the head's on the batch's own targets
        torch.manual_seed(5)
        torch.testing.assert_close(loss, module.model.head.loss(module.model(batch.video, seen[0]), batch.targets))

    # λ ~ Beta(0.5, 0.5): with segments 1 in the first half of the list and 0 in the second, mixed = λ there
    half = torch.zeros(4, 10, 1, 1, 1)
    half.view(-1)[:20] = 1
    draws = torch.cat([module.training_audio(half, step).flatten()[:20] for step in range(100)])  # 2000 draws
    assert abs(draws.mean().item() - 0.5) < 0.03
    middle = ((draws > 0.1) & (draws < 0.9)).float().mean().item()
    assert abs(middle - 0.590) < 0.04  # Beta(0.5, 0.5): 1 − (4/π)·asin(√0.1); uniform would give 0.8

    seen.clear()
    module.eval()
    module.validation_step(batch, 0)
    assert torch.equal(seen[0], batch.audio)
    plain = recording(tiny_module())
    seen.clear()
    plain.train()
    plain.training_step(batch, 0)
    assert torch.equal(seen[0], batch.audio)
    with pytest.raises(ValueError, match="audio_mixup_alpha"):
        tiny_module(audio_mixup_alpha=-1.0)


# ---- checkpoints and resume ---------------------------------------------------------------------------
def test_lightning_checkpoint_holds_only_trainable_state_and_resume_continues(tmp_path, ave_root):
    module = tiny_module()
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, every_n_train_steps=1)
    trainer = tiny_trainer(tmp_path, max_steps=2, callbacks=[checkpoint], limit_val_batches=0)
    trainer.fit(module, datamodule=tiny_data(module, ave_root))
    last = tmp_path / "ckpt" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)  # plain tensors and types only
    assert saved["global_step"] == 2
    assert set(saved["state_dict"]) == set(trainable_state_keys(module))
    assert not [k for k in saved["state_dict"] if k.startswith("model.method.backbone.")]
    assert saved["optimizer_states"][0]["state"]  # Adam moments are there

    resumed = tiny_module()  # a fresh module: its adapters differ until the checkpoint is loaded
    same_checkpointing = ModelCheckpoint(dirpath=tmp_path / "ckpt_resumed", save_last=True, every_n_train_steps=1)
    trainer = tiny_trainer(tmp_path, max_steps=4, limit_val_batches=0, callbacks=[same_checkpointing])
    loaded = {}

    class Capture(L.Callback):
        def on_train_start(self, trainer, pl_module):
            loaded.update({k: v.clone() for k, v in pl_module.state_dict().items() if k in saved["state_dict"]})
            loaded["adam_step"] = trainer.optimizers[0].state_dict()["state"][0]["step"].clone()

    trainer.callbacks.append(Capture())
    trainer.fit(resumed, datamodule=tiny_data(resumed, ave_root), ckpt_path=str(last))
    assert trainer.global_step == 4
    assert loaded.pop("adam_step").item() == 2
    for key, value in saved["state_dict"].items():
        assert torch.equal(loaded[key], value), key

    # the checkpoint also rebuilds a module on its own (hyper-parameters are plain types: weights_only works)
    restored = AVAdaptModule.load_from_checkpoint(last, weights_only=True)
    assert restored.hparams.method == "stg_cma" and restored.fbank == FBANK
    for key, value in saved["state_dict"].items():
        assert torch.equal(restored.state_dict()[key], value), key


def test_checkpoint_with_a_foreign_key_is_refused(tmp_path, ave_root):
    module = tiny_module()
    state = {k: v for k, v in module.state_dict().items() if k in set(trainable_state_keys(module))}
    state["model.head.extra.weight"] = torch.zeros(1)
    with pytest.raises(AdapterMismatchError, match="model.head.extra.weight"):
        tiny_module().load_state_dict(state)
    del state["model.head.extra.weight"]
    state.pop("model.head.classifier.0.weight")
    with pytest.raises(AdapterMismatchError, match="missing keys: model.head.classifier.0.weight"):
        tiny_module().load_state_dict(state)


class _Payload:
    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def test_checkpoint_needing_arbitrary_unpickling_is_refused(tmp_path, ave_root):
    module = tiny_module()
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _Payload(), "pytorch-lightning_version": "2.6.0"}, evil)
    trainer = tiny_trainer(tmp_path)
    with pytest.raises(pickle.UnpicklingError, match="(?i)weights.only"):
        trainer.validate(module, datamodule=tiny_data(module, ave_root), ckpt_path=str(evil))


def test_fit_exports_the_best_validation_checkpoint_as_an_adapter(tmp_path, ave_root):
    module = tiny_module()
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/accuracy", mode="max")
    export = AdapterExport(str(tmp_path / "adapter"))
    trainer = tiny_trainer(tmp_path, max_steps=-1, max_epochs=2, limit_train_batches=1, callbacks=[checkpoint, export])
    trainer.fit(module, datamodule=tiny_data(module, ave_root))
    best = torch.load(checkpoint.best_model_path, weights_only=True)["state_dict"]
    config = export.exported / "config.json"
    assert config.is_file()
    weights = tmp_path / "backbone.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in module.model.backbone.model.state_dict().items()}, str(weights))
    model = load_adapter(export.exported, weights=weights)
    for key, value in model.state_dict().items():
        if f"model.{key}" in best:
            assert torch.equal(value, best[f"model.{key}"]), key
    assert model.adapter_config["class_names"][-1] == "background"
    assert model.adapter_config["preprocessing"]["video"]["input_size"] == [3, 32, 32]
    # the audio front end by name, with its fbank values: predict rebuilds the spectrograms from them
    assert model.adapter_config["preprocessing"]["audio_front_end"] == "vit"
    assert model.adapter_config["preprocessing"]["fbank"] == FBANK.to_dict()


# ---- training curves -------------------------------------------------------------------------------------
def test_read_curves_takes_loss_monitor_and_learning_rates_from_a_metrics_file(tmp_path):
    metrics = tmp_path / "metrics.csv"  # the layout CSVLogger writes: one row per logging call, blanks elsewhere
    metrics.write_text(
        "epoch,lr/head,lr/method,step,train/loss,val/accuracy,val/loss\n"
        "0,0.0,0.0,0,,,\n"
        "0,,,0,2.5,,\n"
        "0,5e-05,0.0005,1,,,\n"
        "0,,,1,2.25,,\n"
        "0,,,1,,0.125,2.0\n"
        "1,0.0001,0.001,2,,,\n"
        "1,,,2,1.75,,\n"
        "1,,,2,,0.5,1.5\n"
        "1,,,2,,,\n"
    )
    curves = read_curves(metrics, monitor="val/accuracy")
    assert curves == Curves(
        loss=[(0, 2.5), (1, 2.25), (2, 1.75)],
        monitor=[(0, 0.125), (1, 0.5)],
        learning_rates={"head": [(0, 0.0), (1, 5e-05), (2, 0.0001)], "method": [(0, 0.0), (1, 0.0005), (2, 0.001)]},
    )
    assert read_curves(metrics, monitor="val/loss").monitor == [(0, 2.0), (1, 1.5)]
    assert read_curves(metrics, monitor=None).monitor == []


def test_fit_draws_training_curves_beside_its_checkpoints_after_every_validation(tmp_path, ave_root):
    module = tiny_module(lr=1e-3, min_lr=1e-5, warmup_epochs=1.0, head_lr_factor=0.1)
    logger = CSVLogger(tmp_path, name="run")
    checkpoint = ModelCheckpoint(monitor="val/accuracy", mode="max")  # in <log_dir>/checkpoints
    curves = TrainingCurves()
    seen = []

    class AfterEachValidation(L.Callback):  # runs after TrainingCurves: the picture must be there already
        def on_validation_end(self, trainer, pl_module):
            png = Path(trainer.log_dir) / "curves.png"
            seen.append((png.is_file(), len(read_curves(Path(trainer.log_dir) / "metrics.csv", "val/accuracy").monitor)))

    trainer = tiny_trainer(tmp_path, max_steps=-1, max_epochs=2, limit_train_batches=2, logger=logger,
                           log_every_n_steps=1, callbacks=[checkpoint, curves, AfterEachValidation()])
    trainer.fit(module, datamodule=tiny_data(module, ave_root))

    run = Path(logger.log_dir)
    assert seen == [(True, 1), (True, 2)]
    assert curves.written == run / "curves.png" and (run / "checkpoints").is_dir()
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]  # the temporary file was renamed
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(run / "curves.png") as picture:
        picture.verify()
        assert picture.format == "PNG" and picture.size[0] > picture.size[1] > 100

    series = read_curves(run / "metrics.csv", "val/accuracy")
    assert [step for step, _ in series.loss] == [0, 1, 2, 3]
    assert all(math.isfinite(value) and value > 0 for _, value in series.loss)
    assert [epoch for epoch, _ in series.monitor] == [0, 1]
    assert series.monitor[-1][1] == pytest.approx(float(trainer.callback_metrics["val/accuracy"]))
    # the learning rates each group trained with: 2 steps per epoch, warm-up 1 epoch = 2 steps, 4 steps in all,
    # both groups towards the same floor 1e-5
    method = [0, 5e-4, 1e-3, 1e-5 + (1e-3 - 1e-5) / 2]
    head = [0, 5e-5, 1e-4, 1e-5 + (1e-4 - 1e-5) / 2]
    assert series.learning_rates["method"] == [(s, pytest.approx(lr)) for s, lr in enumerate(method)]
    assert series.learning_rates["head"] == [(s, pytest.approx(lr)) for s, lr in enumerate(head)]


def test_training_curves_need_a_csv_logger(tmp_path, ave_root):
    module = tiny_module()
    curves = TrainingCurves(str(tmp_path / "pictures"))
    tiny_trainer(tmp_path, callbacks=[curves]).fit(module, datamodule=tiny_data(module, ave_root))  # logger=False
    assert curves.written is None and not (tmp_path / "pictures").exists()


# ---- precision -------------------------------------------------------------------------------------------
def test_bf16_mixed_and_fp32_losses_agree(tmp_path, ave_root):
    losses = {}
    for precision in ("32-true", "bf16-mixed"):
        module = tiny_module()
        with torch.no_grad():  # move away from the identity so the adapters matter
            for p in module.model.trainable_parameters():
                p.add_(torch.randn_like(p) * 0.02)
        trainer = tiny_trainer(tmp_path, precision=precision)
        result = trainer.validate(module, datamodule=tiny_data(module, ave_root), verbose=False)
        losses[precision] = result[0]["val/loss"]
    assert losses["bf16-mixed"] == pytest.approx(losses["32-true"], rel=0.03)


def test_bf16_training_holds_frozen_weights_in_bf16_trims_the_heap_while_it_runs_and_warns_if_emulated(
        tmp_path, ave_root, monkeypatch):
    from avadapt.training import module as training_module

    monkeypatch.setattr(training_module, "cpu_supports_bf16", lambda: False)  # as on an AVX2-only CPU
    module = tiny_module()
    seen = {}

    class Probe(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen["dtype"] = pl_module.model.backbone.model.blocks[0].mlp.fc1.weight.dtype
            seen["hooks"] = len(pl_module._heap_tuning.trim_hooks)

    with pytest.warns(UserWarning, match="without native bf16"):
        tiny_trainer(tmp_path, precision="bf16-mixed", callbacks=[Probe()]).fit(
            module, datamodule=tiny_data(module, ave_root))
    # test_vit has 6 blocks: the heap is trimmed after the FFN of the last sixth, one block (glibc here)
    assert len(module.model.backbone.blocks) == 6
    assert seen == {"dtype": torch.bfloat16, "hooks": 1}
    assert module.model.backbone.model.blocks[0].mlp.fc1.weight.dtype == torch.float32  # given back at the end
    assert module._heap_tuning is None


def test_data_and_head_class_counts_must_agree(tmp_path, ave_root):
    module = tiny_module(task_options={"num_classes": 29})
    with pytest.raises(ValueError, match="num_classes=3"):
        tiny_trainer(tmp_path).validate(module, datamodule=tiny_data(module, ave_root))


# ---- the whole pipeline ----------------------------------------------------------------------------------
def test_synth_prepare_fit_save_load_predict_round_trip(tmp_path, ave_root):
    """Predictions of the trained module and of the model reloaded from its adapter directory are identical."""
    from safetensors.torch import save_file

    from avadapt.prediction import predict_video
    from avadapt.tasks.ave.prepare import prepare_ave

    torch.manual_seed(0)
    backbone_file = tmp_path / "backbone.safetensors"
    module = tiny_module()
    save_file({k: v.contiguous() for k, v in module.model.backbone.model.state_dict().items()}, str(backbone_file))
    module = tiny_module(weights=str(backbone_file))
    video_config = module.preprocessing["video"]
    prepare_ave(ave_root, tmp_path / "cache", workers=1, image_size=32, fbank=FBANK, progress=False,
                crop_pct=video_config["crop_pct"], interpolation=video_config["interpolation"])
    data = AVDataModule(str(ave_root), cache_dir=str(tmp_path / "cache"), batch_size=2, num_workers=0,
                         preprocessing=module.preprocessing)
    export = AdapterExport(str(tmp_path / "adapter"))
    trainer = tiny_trainer(tmp_path, max_steps=3, limit_val_batches=0, enable_checkpointing=False, callbacks=[export])
    trainer.fit(module, datamodule=data)
    assert trainer.global_step == 3

    loaded = load_adapter(export.exported)  # backbone found through the recorded weights file
    module.model.eval()
    data.setup("test")
    batch = next(iter(data.test_dataloader()))
    with torch.no_grad():
        assert torch.equal(module.model(batch.video, batch.audio), loaded(batch.video, batch.audio))
    video = ave_root / "AVE" / f"{batch.meta['video_id'][0]}.mp4"
    before = predict_video(module.model, video, preprocessing=module.preprocessing, class_names=data.class_names)
    after = predict_video(loaded, video)
    assert torch.equal(before.probabilities, after.probabilities)
    assert before.frames is None and after.frames is None  # AVE's timeline is drawn without the frames
    assert before.info == after.info
    adapter_bytes = (export.exported / "adapter.safetensors").stat().st_size
    assert adapter_bytes < 4 * sum(p.numel() for p in module.model.parameters()) / 2

"""Classification from class names on the evaluation datasets' own layouts: AVE (per-second labels with
background; the three background modes, clip accuracy, few-shot with a background name) and LLP (multi-hot clip
labels), on tiny random encoders; scores checked against the same logits scored by hand."""

from __future__ import annotations

import pytest
import torch

from avadapt._registry import DATASETS
from avadapt.text.encoders import build_text_encoders, write_tiny_text_checkpoints
from avadapt.text.evaluate import ave_segment_accuracy
from avadapt.text.run import _data, class_list, collect, fewshot, frozen_model, prepare_cache, zeroshot

pytestmark = [pytest.mark.usefixtures("one_thread")]

SMALL = {"fbank": {"frame_shift_ms": 40.0, "high_freq": 8000.0}}
AUDIO = {"num_mel_bins": 16, "num_frames": 251}


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    return write_tiny_text_checkpoints(tmp_path_factory.mktemp("encoders"), clap_audio=AUDIO).to_dict()


def _corpus(tmp_path_factory, dataset: str, clips: int, encoders):
    root, cache = tmp_path_factory.mktemp(dataset), tmp_path_factory.mktemp(f"{dataset}_cache")
    DATASETS.get(dataset).synthesize(root, clips=clips, seed=0)
    names, _ = class_list(root, dataset, None)
    model = frozen_model(encoders, names, DATASETS.get(dataset).num_segments, SMALL)
    prepare_cache(root, dataset, cache, model)
    return root, cache


@pytest.fixture(scope="module")
def ave(tmp_path_factory, encoders):
    return _corpus(tmp_path_factory, "ave", 12, encoders)


@pytest.fixture(scope="module")
def llp(tmp_path_factory, encoders):
    return _corpus(tmp_path_factory, "llp", 12, encoders)


def test_ave_names_exclude_background_and_report_it(ave):
    root, _ = ave
    names, background = class_list(root, "ave", None)
    assert background == "background" and "background" not in names
    assert names == DATASETS.get("ave").class_names(root)[:-1]


@pytest.mark.parametrize("mode", ["none", "threshold", "prompt"])
def test_ave_zero_shot_scores_are_the_logits_scored_by_hand(ave, encoders, mode):
    root, cache = ave
    scores = zeroshot(root, "ave", encoders=encoders, cache=cache, background=mode, model=SMALL, progress=False)
    names, background = class_list(root, "ave", None)
    model = frozen_model(encoders, names + ([background] if mode == "prompt" else []), 10, SMALL)
    data = _data(root, "ave", model, cache, 4)
    data.setup("test")
    logits, labels, _ = collect(model, data.test_dataloader())
    assert scores["accuracy"] == pytest.approx(ave_segment_accuracy(logits, labels, mode).accuracy)
    assert scores["segments"] == labels.numel() and scores["background"] == mode
    if mode == "none":
        assert scores["background_accuracy"] == 0.0  # no name for background: never right, as the reference
    assert 0.0 <= scores["clip_accuracy"] <= 1.0


def test_ave_few_shot_trains_with_a_background_name(ave, encoders, tmp_path):
    root, cache = ave
    result = fewshot(root, "ave", 1, tmp_path, encoders=encoders, cache=cache, epochs=1, batch_size=2,
                     model=SMALL, progress=False)
    record = (tmp_path / "adapter" / "text_adapter.json").read_text()
    assert '"background"' in record  # the names it scored: the events, then background
    assert {"accuracy", "background_accuracy", "clip_accuracy"} <= set(result)


def test_llp_zero_shot_gives_the_multilabel_scores(llp, encoders):
    root, cache = llp
    scores = zeroshot(root, "llp", encoders=encoders, cache=cache, model=SMALL, progress=False)
    assert {"accuracy", "reference_top1", "mAP"} <= set(scores)
    assert scores["reference_top1"] <= scores["accuracy"]  # a first-class hit is a hit
    assert scores["background"] is None


def test_a_text_model_reads_the_caches_it_prepared(llp, encoders):
    root, cache = llp
    names, _ = class_list(root, "llp", None)
    model = frozen_model(encoders, names, 10, SMALL)
    data = _data(root, "llp", model, cache, 2)
    data.setup("test")
    batch = next(iter(data.test_dataloader()))
    clip, _ = build_text_encoders(model_config_of(encoders))
    assert batch.video.shape[-1] == clip.image_size
    assert batch.audio.shape[-2:] == (AUDIO["num_mel_bins"], AUDIO["num_frames"])
    assert batch.targets["labels"].is_floating_point() and batch.targets["labels"].shape[-1] == len(names)
    assert torch.isfinite(model(batch.video, batch.audio).logits).all()


def model_config_of(encoders):
    from avadapt.text.encoders import TextEncodersConfig

    return TextEncodersConfig.from_dict(encoders)

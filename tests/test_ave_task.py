"""AVE task: the segment-accuracy metric against a hand computation, predictions and the timeline picture."""

from __future__ import annotations

import pytest
import torch

from avadapt.tasks.ave.predict import draw_timeline
from avadapt.tasks.ave.task import AVEConfig, AVEHead
from avadapt.types import FeatureSpec


def _spec(dim: int, modalities: tuple[str, ...]) -> FeatureSpec:
    return FeatureSpec(dim=dim, modalities=modalities, num_segments=10, map_dims=(dim,), map_strides=(16,),
                       image_size=(224, 224), family="vit")


def _head(num_classes: int = 4) -> AVEHead:
    return AVEHead(_spec(8, ("audio", "video")), config=AVEConfig(num_classes=num_classes))


def _logits_for(predicted: list[list[int]], num_classes: int) -> torch.Tensor:
    """(B, T, C) logits whose argmax is ``predicted`` (a confident one-hot plus noise below it)."""
    logits = torch.rand(len(predicted), len(predicted[0]), num_classes)
    for b, row in enumerate(predicted):
        for t, k in enumerate(row):
            logits[b, t, k] = 5.0
    return logits


def test_accuracy_is_the_fraction_of_correct_segments_over_the_split():
    head = _head(num_classes=4)
    metrics = head.metrics()
    # two batches of a "split": 2 clips × 5 s, then 1 clip × 5 s
    batches = [
        ([[0, 0, 3, 3, 1], [2, 2, 2, 3, 3]], [[0, 1, 3, 3, 1], [2, 2, 3, 3, 3]]),
        ([[3, 3, 3, 3, 3]], [[1, 1, 1, 3, 3]]),
    ]
    correct = total = 0
    per_class_hits = [0] * 4
    per_class_count = [0] * 4
    for predicted, labels in batches:
        head.update_metrics(metrics, _logits_for(predicted, 4), {"labels": torch.tensor(labels)})
        for p_row, y_row in zip(predicted, labels):
            for p, y in zip(p_row, y_row):
                correct += p == y
                total += 1
                per_class_count[y] += 1
                per_class_hits[y] += p == y
    result = metrics.compute()
    assert (correct, total) == (10, 15)
    assert result["accuracy"].item() == pytest.approx(10 / 15)
    assert [h / c for h, c in zip(per_class_hits, per_class_count)] == [1 / 1, 1 / 5, 2 / 2, 6 / 7]
    assert result["class_accuracy"].tolist() == pytest.approx([1 / 1, 1 / 5, 2 / 2, 6 / 7])


def test_predict_returns_argmax_and_its_probability():
    head = _head(3)
    logits = torch.tensor([[[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]]])
    labels, scores = head.predict(logits)
    assert labels.tolist() == [[1, 0]]
    assert scores[0, 0].item() == pytest.approx(torch.softmax(logits[0, 0], -1)[1].item())


def _png_size(path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")  # IHDR width, height


def test_timeline_widens_with_the_seconds_up_to_a_cap(tmp_path):
    """At 110 dpi: 8 inches wide at least, 0.45 inch a second, 30 at most; 2.4 inches high plus 0.8 a strip."""
    names = ["Church bell", "Bark, dog", "background"]
    short = draw_timeline(tmp_path / "short.png", [2, 0, 0, 1], [0.9, 0.6, 0.7, 0.4], names,
                          ground_truth=[2, 0, 0, 0], title="clip.mp4")
    middle = draw_timeline(tmp_path / "middle.png", [i % 3 for i in range(40)], [0.5] * 40, names)
    long = draw_timeline(tmp_path / "long.png", [i % 3 for i in range(300)], [0.5] * 300, names)
    assert _png_size(short) == (8 * 110, 4 * 110)  # two strips: prediction and ground truth
    assert _png_size(middle) == (18 * 110, 352)  # 40 s · 0.45 = 18 inches; one strip, 3.2 inches
    assert _png_size(long) == (30 * 110, 352)  # 300 s · 0.45 = 135 inches, capped at 30


def test_timeline_rejects_mismatched_lengths(tmp_path):
    with pytest.raises(ValueError, match="ground-truth"):
        draw_timeline(tmp_path / "x.png", [0, 1], [0.5, 0.5], ["a", "b"], ground_truth=[0])


def test_head_linear_layers_start_as_the_reference_initialises_them():
    torch.manual_seed(0)
    head = AVEHead(_spec(768, ("audio", "video")), config=AVEConfig())
    first, last = head.classifier[0], head.classifier[2]
    assert first.weight.shape == (512, 1536)
    for layer in (first, last):
        assert torch.count_nonzero(layer.bias) == 0
    assert first.weight.std().item() == pytest.approx(0.02, rel=0.02)  # 786k draws of N(0, 0.02²)
    assert first.weight.mean().abs().item() < 1e-4
    assert last.weight.std().item() == pytest.approx(0.02, rel=0.1)  # 14.8k draws


@pytest.mark.parametrize("modality", ["audio", "video"])
def test_single_branch_head_is_layer_norm_then_linear(modality):
    head = AVEHead(_spec(8, (modality,)), config=AVEConfig(num_classes=4))
    norm, linear = head.classifier
    assert isinstance(norm, torch.nn.LayerNorm) and norm.normalized_shape == (8,)
    assert (linear.in_features, linear.out_features) == (8, 4)
    assert sum(p.numel() for p in head.parameters()) == 2 * 8 + 8 * 4 + 4


def test_lavish_loss_is_binary_cross_entropy_on_the_softmax_against_one_hot_targets():
    head = AVEHead(_spec(8, ("audio", "video")), config=AVEConfig(num_classes=3, loss="bce_on_softmax"))
    logits = torch.tensor([[[2.0, 0.0, 0.0]]])  # one clip, one segment, three classes
    # softmax = (e²/(e² + 2), 1/(e² + 2), 1/(e² + 2)) = (0.786986, 0.106507, 0.106507)
    # target 0: (−ln 0.786986 − 2·ln(1 − 0.106507)) / 3 = 0.154926
    assert head.loss(logits, {"labels": torch.tensor([[0]])}).item() == pytest.approx(0.154926, abs=1e-6)
    # target 1: (−ln(1 − 0.786986) − ln 0.106507 − ln(1 − 0.106507)) / 3 = 1.299520
    assert head.loss(logits, {"labels": torch.tensor([[1]])}).item() == pytest.approx(1.299520, abs=1e-6)
    cross_entropy = AVEHead(_spec(8, ("audio", "video")), config=AVEConfig(num_classes=3))
    assert cross_entropy.loss(logits, {"labels": torch.tensor([[0]])}).item() == pytest.approx(0.239545, abs=1e-6)
    with pytest.raises(ValueError, match="bce_on_softmax"):
        AVEConfig(loss="focal")

"""AVS's prediction on a whole video: a mask per second as PNG files, their picture and a JSON summary."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from avadapt.errors import OptionError
from avadapt.tasks.base import Task

MASK_THRESHOLD = 0.5
"""A pixel belongs to the mask when its probability exceeds this (AVSBench's ``mask_iou``)."""


class AVSPrediction(Task):
    """AVS's results: the mask of every second, ``OUT.png`` (each frame with its mask, the ground truth's below it)
    and ``OUT_masks/{k:02d}.png`` (0 / 255, k = 1..S); ground_truth: a folder of mask PNGs, one per frame
    (:func:`read_ground_truth_masks`); ``top`` is unused."""

    prediction_kind = "a mask of the sounding object per second (PNG files), their picture (PNG) and JSON"

    def segment_probabilities(self, outputs: Any) -> torch.Tensor:
        """(B, T, H, W): the per-pixel probability of the sounding object (``AVSOutputs.logits`` through a sigmoid)."""
        return torch.sigmoid(outputs.logits.float())

    def prediction_result(self, probabilities: torch.Tensor, frames: torch.Tensor, info: dict[str, Any],
                          ground_truth: str | None = None, top: int = 3) -> tuple[dict[str, Any], Callable]:
        frames_np = frames.cpu().numpy().astype(np.uint8)  # (S, H, W, 3)
        seconds, height, width = frames_np.shape[:3]
        probabilities = probabilities.float().cpu()
        if probabilities.shape[-2:] != (height, width):
            probabilities = F.interpolate(probabilities.unsqueeze(1), size=(height, width), mode="bilinear",
                                          align_corners=False).squeeze(1)
        probs = probabilities.numpy()  # (S, H, W)
        masks = probs > MASK_THRESHOLD
        entries = []
        for t in range(seconds):
            inside = probs[t][masks[t]]
            entries.append({"second": t, "frame": t + 1, "mask_area": round(float(masks[t].mean()), 5),
                            "mean_probability_in_mask": round(float(inside.mean()), 5) if inside.size else None})
        result: dict[str, Any] = {"image_size": [height, width], "threshold": MASK_THRESHOLD, "frames": entries}
        truth: dict[int, np.ndarray] = {}
        if ground_truth is not None:
            for t, (path, mask) in read_ground_truth_masks(ground_truth, (height, width), seconds).items():
                truth[t] = mask
                entries[t]["ground_truth"] = str(path)
                entries[t]["iou"] = round(mask_iou(masks[t], mask), 5)
            ious = [entries[t]["iou"] for t in sorted(truth)]
            result["miou"] = round(sum(ious) / len(ious), 5)
            result["ground_truth_frames"] = len(ious)
            result["agreement"] = f"mIoU with the ground truth: {result['miou']:.3f} over {len(ious)} frames"
        areas = [entry["mask_area"] for entry in entries]
        found = sum(area > 0 for area in areas)
        largest = max(range(seconds), key=lambda t: areas[t])
        result["summary"] = (f"sounding object in {found} of {seconds} s · mask area {sum(areas) / seconds:.1%} on "
                             f"average, largest {areas[largest]:.1%} at {largest} s" if found else
                             f"no sounding object found in {seconds} s (highest pixel probability {probs.max():.2f})")

        def write_files(out: Path, result: dict[str, Any]) -> None:
            masks_dir = out.parent / f"{out.with_suffix('').name}_masks"
            masks_dir.mkdir(exist_ok=True)
            result["masks_dir"] = str(masks_dir)
            for entry, mask in zip(entries, masks):
                entry["mask"] = str(masks_dir / f"{entry['frame']:02d}.png")
                Image.fromarray(mask.astype(np.uint8) * 255).save(entry["mask"])
            draw_masks(out.with_suffix(".png"), frames_np, masks, truth or None, Path(info["video"]).name)
        return result, write_files


def mask_iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """IoU of two bool masks as AVSBench's ``mask_iou`` scores a frame: |P∩G| / |P∪G|, or for an empty ground
    truth the fraction of pixels the prediction also leaves empty."""
    if not truth.any():
        return float((~predicted & ~truth).sum() / truth.size)
    return float((predicted & truth).sum() / (predicted | truth).sum())


def read_ground_truth_masks(folder: str | Path, size: tuple[int, int], seconds: int
                            ) -> dict[int, tuple[Path, np.ndarray]]:
    """Frame index (0-based) → (file, bool mask at ``size``) for every PNG of ``folder``.

    Files whose names all end in distinct numbers are placed by that number (1-based, or 0-based when a 0
    occurs: AVSBench's ``{name}_{k}.png`` from 1, AVSS's ``{i}.png`` from 0); otherwise by natural sort order.
    Pixels > 0 are the object (binary '1', grey 'L' and palette 'P' masks alike; colour masks: any channel).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise OptionError(f"{folder}: AVS ground truth must be a folder of mask PNGs, one per frame "
                          f"({{name}}_{{k}}.png, k = 1..{seconds})")
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() == ".png"),
                   key=lambda p: [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", p.name)])
    if not files:
        raise OptionError(f"{folder}: no PNG masks in this folder")
    numbers = [int(match.group(1)) if (match := re.search(r"(\d+)$", p.stem)) else None for p in files]
    if all(n is not None for n in numbers) and len(set(numbers)) == len(numbers):
        first = 0 if 0 in numbers else 1
        indices = [n - first for n in numbers]
    else:
        indices = list(range(len(files)))
    masks = {}
    for index, path in zip(indices, files):
        if index >= seconds:
            raise OptionError(f"{path}: a mask for frame {index + 1}, but the video has {seconds} s")
        image = Image.open(path)
        if image.mode not in ("1", "L", "P", "I", "I;16"):
            image = image.convert("RGB")
        binary = np.asarray(image) > 0
        if binary.ndim == 3:
            binary = binary.any(-1)
        resized = Image.fromarray(binary.astype(np.uint8) * 255).resize((size[1], size[0]), Image.Resampling.NEAREST)
        masks[index] = (path, np.asarray(resized) > 0)
    return masks


PREDICTION_COLOR = (1.0, 0.35, 0.0)
GROUND_TRUTH_COLOR = (0.0, 0.75, 0.35)
MAX_COLUMNS = 10


def draw_masks(path: Path, frames: np.ndarray, masks: np.ndarray,
               ground_truth: dict[int, np.ndarray] | None = None, title: str | None = None) -> None:
    """A PNG with one panel per second: the frame with its predicted mask (fill and contour), and with
    ``ground_truth`` (frame index → bool mask) a panel below it with the ground-truth mask and the IoU.

    frames: (S, H, W, 3) uint8. masks: (S, H, W) bool. Panels wrap after 10 seconds.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    seconds = frames.shape[0]
    columns = min(seconds, MAX_COLUMNS)
    rows_per_group = 2 if ground_truth is not None else 1
    rows = math.ceil(seconds / columns) * rows_per_group
    figure = Figure(figsize=(2.0 * columns, 2.1 * rows + 0.5), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.subplots(rows, columns, squeeze=False)
    for axes in grid.flat:
        axes.set_axis_off()
    for t in range(seconds):
        group, column = divmod(t, columns)
        panels = [("prediction", masks[t], PREDICTION_COLOR, f"{t} s · mask {masks[t].mean():.0%}")]
        if ground_truth is not None:
            iou = f"IoU {mask_iou(masks[t], ground_truth[t]):.2f}" if t in ground_truth else "no ground truth"
            panels.append(("ground truth", ground_truth.get(t), GROUND_TRUTH_COLOR, iou))
        for row, (name, mask, color, caption) in enumerate(panels):  # the frame, the mask filled and outlined
            axes = grid[group * rows_per_group + row, column]
            axes.set_axis_on()
            axes.imshow(frames[t])
            if mask is not None:
                fill = np.zeros((*mask.shape, 4))
                fill[mask] = (*color, 0.45)
                axes.imshow(fill)
                if mask.any() and not mask.all():
                    axes.contour(mask.astype(float), levels=[0.5], colors=[color], linewidths=1.2)
            axes.set(xticks=[], yticks=[])
            axes.set_title(caption, fontsize=8)
            if column == 0:
                axes.set_ylabel(name, fontsize=8)
    if title:
        if ground_truth:
            ious = [mask_iou(masks[t], ground_truth[t]) for t in sorted(ground_truth)]
            title = f"{title} — mIoU {sum(ious) / len(ious):.3f} over {len(ious)} frames"
        figure.suptitle(title, fontsize=10)
    figure.savefig(path, dpi=100)

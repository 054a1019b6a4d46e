"""Per-segment R(2+1)D-18 features of LLP videos, the clip-level visual stream both AVVP references concatenate to
their frame features (``AVVPConfig.extra_video_dim`` 512).

As the AVVP baseline extracts them (AVVP-ECCV20 ``scripts/extract_3D_feat.py``): 80 frames over the 10 s (8 fps),
each resized to 112 × 112 and normalised with the Kinetics statistics of torchvision's video models, cut into 10
clips of 8 frames, each through torchvision's ``r2plus1d_18`` without its classifier → ``<out>/<id>.npy``, (10, 512)
float32. The frozen network is built by torchvision and its weights read from a local file (a ``.safetensors`` file
or a state dict ``torch.load`` reads with ``weights_only=True``), as no weights can be fetched here.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avadapt._files import replaced_atomically
from avadapt.checkpoint_files import read_state_dict
from avadapt.data.media import read_clip
from avadapt.errors import CheckpointError, MediaError
from avadapt.tasks.avvp.dataset import LLP_SEGMENTS, LLPAnnotations, LLPDataset

FRAMES_PER_SEGMENT = 8  # 8 fps, one 8-frame clip a second
FRAME_SIZE = 112
# torchvision's video classification models' normalisation (R2Plus1D_18_Weights.KINETICS400_V1's transforms)
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
FEATURE_DIM = 512


def load_r2plus1d(weights: str | Path) -> nn.Module:
    """torchvision's ``r2plus1d_18`` with the weights of a local file, its classifier replaced by the identity,
    frozen and in eval mode: (B, 3, 8, 112, 112) → (B, 512). Every weight must be in the file (a file of another
    network fails naming its missing or unexpected keys)."""
    from torchvision.models.video import r2plus1d_18

    model = r2plus1d_18(weights=None)
    state = read_state_dict(weights, "R(2+1)D-18 weights")
    missing, unexpected = model.load_state_dict(state, strict=False)
    classifier = {"fc.weight", "fc.bias"}
    if set(missing) - classifier or unexpected:
        raise CheckpointError(f"{weights}: not torchvision's r2plus1d_18 weights; missing "
                              f"{sorted(set(missing) - classifier)[:5]}, unexpected {sorted(unexpected)[:5]}")
    model.fc = nn.Identity()
    model.requires_grad_(False)
    return model.eval()


def segment_clips(path: str | Path) -> torch.Tensor:
    """(T, 3, 8, 112, 112) normalised clips of a 10 s video: the frame on screen at the middle of every eighth of
    a second, resized to 112 × 112 (bilinear, as PIL's default resize the reference uses)."""
    clip = read_clip(path, LLP_SEGMENTS * FRAMES_PER_SEGMENT, 1 / FRAMES_PER_SEGMENT)
    frames = torch.from_numpy(clip.frames).permute(0, 3, 1, 2).float() / 255  # (80, 3, H, W)
    frames = F.interpolate(frames, size=(FRAME_SIZE, FRAME_SIZE), mode="bilinear", antialias=True,
                           align_corners=False)
    mean, std = torch.tensor(KINETICS_MEAN).view(1, 3, 1, 1), torch.tensor(KINETICS_STD).view(1, 3, 1, 1)
    frames = (frames - mean) / std
    return frames.view(LLP_SEGMENTS, FRAMES_PER_SEGMENT, 3, FRAME_SIZE, FRAME_SIZE).transpose(1, 2)  # (T, 3, 8, S, S)


@torch.no_grad()
def motion_features(model: nn.Module, path: str | Path) -> np.ndarray:
    """(T, 512) float32 features of one video file."""
    return model(segment_clips(path)).float().numpy()


def extract_motion_features(root: str | Path, out: str | Path, weights: str | Path,
                            media_root: str | Path | None = None, video_ids: Iterable[str] | None = None
                            ) -> dict[str, list[str]]:
    """Write ``<out>/<id>.npy`` for every video id of ``<root>``'s weak-label files (or of ``video_ids``) from
    ``<media_root or root>/LLP_dataset/video/<id>.mp4``; ids already written are skipped, so a stopped run resumes.
    Returns the ids ``written`` and ``failed`` (a missing or unreadable file, with its reason printed)."""
    root, out = Path(root), Path(out)
    media_root = Path(media_root) if media_root is not None else root
    if video_ids is None:
        annotations = LLPAnnotations.load(root)
        video_ids = sorted({row.video_id for rows in annotations.weak.values() for row in rows})
    out.mkdir(parents=True, exist_ok=True)
    model = load_r2plus1d(weights)
    done: dict[str, list[str]] = {"written": [], "failed": []}
    for video_id in video_ids:
        target = out / f"{video_id}.npy"
        if target.exists():
            continue
        (media,) = LLPDataset.layout_paths(media_root, "mp4", video_id)
        try:
            features = motion_features(model, media)
        except MediaError as err:
            print(f"{video_id}: {err}")
            done["failed"].append(video_id)
            continue
        buffer = io.BytesIO()
        np.save(buffer, features)
        with replaced_atomically(target) as tmp:
            tmp.write_bytes(buffer.getvalue())
        done["written"].append(video_id)
    return done

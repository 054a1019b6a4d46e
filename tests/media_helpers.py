"""Small media files for the data tests, written with the package's own PyAV writer.

Frames carry their index as brightness (``INDEX_STEP · i``), so a test can read back which frame
the decoder chose for each segment.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
from safetensors import safe_open

from avadapt.data.media import write_mp4

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
INDEX_STEP = 6  # brightness step between consecutive frames; survives H.264 at crf 18


def index_frames(count: int, size: int = 32, gray: bool = False) -> np.ndarray:
    """(count, size, size, 3) — or (count, size, size) if gray — uint8, frame i of brightness 6·i."""
    values = np.minimum(np.arange(count) * INDEX_STEP, 255).astype(np.uint8)
    frames = np.broadcast_to(values[:, None, None], (count, size, size))
    return np.ascontiguousarray(frames if gray else np.repeat(frames[..., None], 3, axis=-1))


def frame_index(frame: np.ndarray) -> int:
    """Inverse of :func:`index_frames` for a decoded (H, W, 3) frame."""
    return round(float(frame.mean()) / INDEX_STEP)


def tone(seconds: float, sample_rate: int, freq: float = 440.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def make_clip(
    path: Path,
    seconds: float = 10.0,
    fps: int = 4,
    sample_rate: int = 16000,
    *,
    channels: int = 1,
    video: bool = True,
    audio: bool = True,
    gray: bool = False,
    silent: bool = False,
    wave: np.ndarray | None = None,
    frame_times: np.ndarray | None = None,
    faststart: bool = False,
    size: int = 32,
) -> Path:
    """An mp4 with index-coded frames and a 440 Hz tone (or ``wave``, or silence)."""
    count = len(frame_times) if frame_times is not None else round(seconds * fps)
    frames = index_frames(count, size, gray=gray) if video else None
    sound = None
    if audio:
        sound = wave if wave is not None else tone(seconds, sample_rate)
        if silent:
            sound = np.zeros_like(sound)
        if channels == 2 and sound.ndim == 1:
            sound = np.stack([sound, sound])
    return write_mp4(
        path,
        frames,
        fps,
        sound,
        sample_rate,
        frame_times=frame_times,
        video_codec="png" if gray else None,
        faststart=faststart,
    )


def write_wav(path: Path, wave: np.ndarray, sample_rate: int) -> Path:
    """A 16-bit PCM wav, the format of the reference ``raw_audio/<id>.wav`` files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = (np.clip(wave, -1, 1) * 32767).astype(np.int16)[None]  # (1, n)
    with av.open(str(path), mode="w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=sample_rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = sample_rate
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def cached_clip_info(path: Path) -> dict[str, object]:
    """The ``info`` dict a cached clip was saved with (its safetensors metadata ``clip``)."""
    with safe_open(str(path), framework="pt") as handle:
        return json.loads(handle.metadata()["clip"])

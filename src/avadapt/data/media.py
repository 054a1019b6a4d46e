"""Reading and writing audio-visual clips with PyAV (FFmpeg), the only media library we depend on.

Decoding is one pass over both streams' packets (:func:`read_windows`: one pass for a whole file's windows,
holding one window at a time), and every failure is a :class:`MediaError` naming the file,
so a data-preparation report can list bad clips instead of stopping on an FFmpeg errno. :func:`write_mp4`
writes real H.264/AAC files for the synthetic datasets and the tests.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import av
import numpy as np

from avadapt.errors import MediaError

# Below this much missing content we treat a stream as complete: containers often declare a few
# milliseconds more than the decoder hands out (codec delay, rounding of the last frame's duration).
_TRUNCATION_TOLERANCE_S = 0.5


@dataclass(frozen=True)
class MediaInfo:
    """What the container declares, read without decoding (see :func:`probe`)."""

    duration: float  # seconds; the longest declared stream (or the container's duration)
    sample_rate: int | None  # of the audio stream; None without one
    channels: int | None


@dataclass
class Clip:
    """T frames (T, H, W, 3) uint8 RGB and the mono waveform (round(T · segment_seconds · sample_rate),)
    float32 of one window of a media file; ``video_seconds`` / ``audio_seconds``: how much real content it
    held, the rest being padding (last frame repeated, audio zeros)."""

    frames: np.ndarray
    wave: np.ndarray
    video_seconds: float
    audio_seconds: float


def _open(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise MediaError(path, "file not found")
    if not path.is_file():
        raise MediaError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise MediaError(path, "empty file (0 bytes)")
    try:
        return av.open(str(path), mode="r")
    except av.error.FFmpegError as err:
        raise MediaError(path, f"cannot be opened as a media file (truncated or corrupt?): {_reason(err)}") from err


def _reason(err: av.error.FFmpegError) -> str:
    """FFmpeg's description of an error, without the file name or function it appends."""
    return err.strerror or str(err)


def _stream_seconds(stream: av.stream.Stream | None) -> float | None:
    if stream is None or stream.duration is None or stream.time_base is None:
        return None
    return float(stream.duration * stream.time_base)


def probe(path: str | Path) -> MediaInfo:
    """Read the container's declared durations and stream parameters without decoding."""
    path = Path(path)
    with _open(path) as container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        declared = [s for s in (_stream_seconds(video), _stream_seconds(audio)) if s is not None]
        if container.duration is not None:
            declared.append(container.duration / av.time_base)
        return MediaInfo(
            duration=max(declared) if declared else 0.0,
            sample_rate=audio.codec_context.sample_rate if audio is not None else None,
            channels=audio.codec_context.channels if audio is not None else None,
        )


class _AudioCollector:
    """Resamples decoded audio frames to ``rate`` Hz, keeping channels, and averages them at the end.

    Stereo is downmixed by the channel mean, the way torchaudio-based AVE loaders do
    (``waveform.mean(0)``); swresample's own mono matrix (FFmpeg ``-ac 1``) weighs each channel by
    1/√2 instead, which would lift a centred stereo signal by 3 dB and can clip.
    """

    def __init__(self, container: av.container.InputContainer, rate: int):
        self.rate = rate
        start = container.start_time  # stream timestamps count from the container's start
        self.origin = start / av.time_base if start is not None else 0.0
        self.resampler: av.AudioResampler | None = None
        self.chunks: list[np.ndarray] = []
        self.first_time: float | None = None  # seconds (relative to the file's origin) of sample 0
        self.samples = 0

    def add(self, frame: av.AudioFrame | None) -> None:
        if frame is not None and self.resampler is None:
            self.first_time = (frame.time if frame.time is not None else 0.0) - self.origin
            self.resampler = av.AudioResampler(format="fltp", layout=frame.layout.name, rate=self.rate)
        if self.resampler is None:
            return
        for out in self.resampler.resample(frame):
            chunk = out.to_ndarray()  # (C, n) planar float32
            self.chunks.append(chunk.mean(axis=0, dtype=np.float32))
            self.samples += chunk.shape[1]

    def seconds_end(self) -> float:
        """Time (relative to origin) just after the last collected sample."""
        return (self.first_time or 0.0) + self.samples / self.rate

    def discard_before(self, seconds: float) -> None:
        """Forget the samples before ``seconds`` (relative to origin), keeping whole chunks that reach past it."""
        while self.chunks and self.first_time is not None:
            length = len(self.chunks[0])
            if self.first_time + length / self.rate > seconds:
                return
            self.chunks.pop(0)
            self.first_time += length / self.rate
            self.samples -= length

    def window(self, start: float, num_samples: int) -> np.ndarray:
        """The samples of [start, start + num_samples / rate), zero where nothing was decoded."""
        wave = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)
        out = np.zeros(num_samples, np.float32)
        offset = round((start - (self.first_time or 0.0)) * self.rate)  # index of `start` in wave
        src_lo, dst_lo = max(offset, 0), max(-offset, 0)
        n = min(len(wave) - src_lo, num_samples - dst_lo)
        if n > 0:
            out[dst_lo : dst_lo + n] = wave[src_lo : src_lo + n]
        return out


def read_clip(
    path: str | Path,
    num_segments: int = 10,
    segment_seconds: float = 1.0,
    *,
    start: float = 0.0,
    sample_rate: int = 16000,
    min_seconds: float | None = None,
) -> Clip:
    """Decode the window [start, start + T·segment_seconds) of a media file into T frames and a waveform.

    Frames: segment t's is the one on screen at its middle, chosen by presentation time (so variable frame
    rates need no special case), converted to RGB by FFmpeg. Audio: all channels resampled to ``sample_rate``
    and averaged to mono, aligned to the video by the streams' timestamps.

    Longer files: decoding seeks to ``start`` and stops once the window is covered. Shorter files: missing
    segments repeat the last frame and missing audio is silence; but as a clip much shorter than its window is
    usually a broken download, content shorter than ``min_seconds`` (default 90 % of the window; 0 accepts any
    length, e.g. for user files) raises :class:`MediaError`, as does a missing, empty, truncated or corrupt
    file, or one without a video or audio stream.
    """
    path = Path(path)
    span = num_segments * segment_seconds
    if min_seconds is None:
        min_seconds = 0.9 * span
    (clip,) = read_windows(path, [start], num_segments, segment_seconds, sample_rate=sample_rate)
    for kind, seconds in (("video", clip.video_seconds), ("audio", clip.audio_seconds)):
        if seconds < min_seconds:
            raise MediaError(
                path,
                f"too short: {seconds:.2f} s of {kind} from {start:g} s, at least {min_seconds:.2f} s "
                f"needed for {num_segments} segments of {segment_seconds:g} s (lower min_seconds "
                "to pad shorter clips)",
            )
    return clip


def read_windows(
    path: str | Path,
    starts: Sequence[float],
    num_segments: int = 10,
    segment_seconds: float = 1.0,
    *,
    sample_rate: int = 16000,
) -> Iterator[Clip]:
    """Decode the windows [start, start + T·segment_seconds) of a media file, in one pass, one window at a time.

    Each window is read as :func:`read_clip` reads it (the frame on screen at every segment's middle, mono audio
    at ``sample_rate``, content past the end padded); ``starts`` must not decrease (windows may overlap). The file
    is opened once and decoded front to back, and only the frames and samples of the windows not yet handed out
    are kept, so memory holds about one window whatever the file's length. A missing, empty, truncated or corrupt
    file, or one without a video or audio stream, raises :class:`MediaError` (a truncation only once decoding
    reaches it, after the windows before it were handed out).
    """
    path = Path(path)
    if num_segments < 1 or segment_seconds <= 0:
        raise ValueError(f"need num_segments >= 1 and segment_seconds > 0, got {num_segments}, {segment_seconds}")
    if any(b < a for a, b in pairwise(starts)):
        raise ValueError(f"window starts must not decrease, got {list(starts)}")
    if not starts:
        return
    span = num_segments * segment_seconds
    # per window, its segments' middles; the frame a middle shows is chosen once and kept until handed out
    targets = [[start + (t + 0.5) * segment_seconds for t in range(num_segments)] for start in starts]
    with _open(path) as container:
        if not container.streams.video:
            raise MediaError(path, "no video stream (a video with an audio track is needed)")
        if not container.streams.audio:
            raise MediaError(path, "no audio stream (a video with an audio track is needed)")
        video, audio = container.streams.video[0], container.streams.audio[0]
        video.thread_type = "AUTO"
        collector = _AudioCollector(container, sample_rate)
        origin = collector.origin
        declared = {"video": _stream_seconds(video), "audio": _stream_seconds(audio)}
        chosen: dict[float, av.VideoFrame] = {}  # segment middle → the frame on screen there
        pending = sorted({middle for window in targets for middle in window})  # middles not yet chosen
        previous: av.VideoFrame | None = None
        size: tuple[int, int] | None = None  # every frame is scaled to the first chosen one's (width, height)
        video_end = 0.0
        done = 0  # windows handed out

        def clip(index: int) -> Clip:
            nonlocal size
            start = starts[index]
            frames = [chosen.get(middle, previous) for middle in targets[index]]  # past the end: the last frame
            size = size or (frames[0].width, frames[0].height)
            pixels = np.stack([f.to_ndarray(format="rgb24", width=size[0], height=size[1]) for f in frames])
            wave = collector.window(start, round(span * sample_rate))  # (T·s·sr,)
            return Clip(pixels, wave, float(np.clip(video_end - start, 0.0, span)),
                        float(np.clip(collector.seconds_end() - start, 0.0, span)))

        def forget_before(index: int) -> None:
            """Drop what no window from ``index`` on needs."""
            if index < len(starts):
                for middle in [m for m in chosen if m < starts[index]]:
                    del chosen[middle]
                collector.discard_before(starts[index])

        try:
            if starts[0] > 0:
                container.seek(int((origin + starts[0]) * av.time_base), backward=True)
            for packet in container.demux(video, audio):
                if packet.stream is video:
                    for frame in packet.decode():
                        frame_time = (frame.time or 0.0) - origin
                        while pending and frame_time > pending[0]:
                            # the frame on screen at a middle is the last one that started before it
                            middle = pending.pop(0)
                            if middle >= starts[done]:  # else its windows were handed out already
                                chosen[middle] = previous if previous is not None else frame
                        previous = frame
                        video_end = frame_time + _frame_seconds(frame, video)
                elif packet.stream is audio:
                    for frame in packet.decode():
                        collector.add(frame)
                while (done < len(starts) and video_end >= starts[done] + span
                       and collector.first_time is not None and collector.seconds_end() >= starts[done] + span):
                    yield clip(done)
                    done += 1
                    forget_before(done)
                if done == len(starts):
                    return
            collector.add(None)  # flush the resampler
        except av.error.FFmpegError as err:
            raise MediaError(path, f"truncated or corrupt data while decoding: {_reason(err)}") from err
        if previous is None:
            raise MediaError(path, "the video stream has no decodable frames (truncated or corrupt?)")
        if collector.first_time is None:
            raise MediaError(path, "the audio stream has no decodable samples (truncated or corrupt?)")
        decoded = {"video": video_end, "audio": collector.seconds_end()}
        for kind in ("video", "audio"):
            want = declared[kind]
            if want is not None and decoded[kind] < want - max(_TRUNCATION_TOLERANCE_S, 0.05 * want):
                raise MediaError(path, f"truncated or corrupt: the {kind} stream declares {want:.2f} s "
                                       f"but only {decoded[kind]:.2f} s could be decoded")
        for index in range(done, len(starts)):  # windows reaching past the end of the file
            yield clip(index)
            forget_before(index + 1)


def _frame_seconds(frame: av.VideoFrame, stream: av.video.stream.VideoStream) -> float:
    """How long a frame stays on screen: its own duration, else one period of the average rate."""
    if frame.duration and frame.time_base:
        return float(frame.duration * frame.time_base)
    rate = stream.average_rate or stream.guessed_rate
    return float(1 / rate) if rate else 0.0


def read_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Decode a whole audio stream (a wav, or a video's audio) to (n,) mono float32 at ``sample_rate``."""
    path = Path(path)
    with _open(path) as container:
        if not container.streams.audio:
            raise MediaError(path, "no audio stream")
        audio = container.streams.audio[0]
        collector = _AudioCollector(container, sample_rate)
        try:
            for frame in container.decode(audio):
                collector.add(frame)
            collector.add(None)
        except av.error.FFmpegError as err:
            raise MediaError(path, f"truncated or corrupt data while decoding: {_reason(err)}") from err
    if collector.first_time is None:
        raise MediaError(path, "the audio stream has no decodable samples (truncated or corrupt?)")
    return np.concatenate(collector.chunks) if collector.chunks else np.zeros(0, np.float32)


def write_mp4(
    path: str | Path,
    frames: np.ndarray | None = None,
    fps: int = 8,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    *,
    frame_times: np.ndarray | None = None,
    video_codec: str | None = None,
    pix_fmt: str | None = None,
    faststart: bool = False,
) -> Path:
    """Write a real mp4 file (H.264 or MPEG-4 video, AAC audio) with PyAV.

    frames: (N, H, W, 3) uint8 RGB or (N, H, W) uint8 grayscale; None writes an audio-only file.
    audio: (S,) mono or (C, S) float32 in [-1, 1] at ``sample_rate``; None writes a video-only file.
    frame_times: (N,) increasing presentation times in seconds, for variable frame rate (default i / fps).
    pix_fmt: default ``yuv420p`` (H.264 needs even width and height), or ``gray`` for grayscale frames with a
    codec that stores gray (``png``; ``libx264`` 4:0:0 decodes as yuv420p).
    faststart: put the index (moov atom) first, as streaming sites do; a file cut short then still
    opens and the reader must notice the missing tail itself.
    """
    path = Path(path)
    if frames is None and audio is None:
        raise ValueError(f"{path}: nothing to write (no frames and no audio)")
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), mode="w", format="mp4", options=options) as container:
        video_stream = audio_stream = None
        if frames is not None:
            frames = np.asarray(frames)
            gray = frames.ndim == 3
            if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or (not gray and frames.shape[-1] != 3):
                raise ValueError(
                    f"{path}: frames must be uint8 (N, H, W, 3) or (N, H, W), got {frames.shape}"
                )
            # H.264 when this PyAV build has it, else MPEG-4 part 2, which every build has
            codec = video_codec or ("libx264" if "libx264" in av.codecs_available else "mpeg4")
            time_base = Fraction(1, 1000) if frame_times is not None else Fraction(1, fps)
            video_stream = container.add_stream(codec, rate=fps)
            video_stream.width, video_stream.height = frames.shape[2], frames.shape[1]
            video_stream.pix_fmt = pix_fmt or ("gray" if gray and codec == "png" else "yuv420p")
            video_stream.time_base = time_base
            video_stream.codec_context.time_base = time_base
            if codec == "libx264":
                # the same input gives the same bytes (synthetic datasets are deterministic by seed): one
                # thread, and no macroblock-tree rate control, which reads uninitialised memory at small sizes
                video_stream.options = {
                    "threads": "1",
                    "crf": "18",
                    "preset": "veryfast",
                    "x264-params": "mbtree=0",
                }
            elif codec == "mpeg4":
                video_stream.options = {"threads": "1", "qscale": "3"}
        if audio is not None:
            audio = np.asarray(audio, dtype=np.float32)
            audio = audio[None] if audio.ndim == 1 else audio  # (C, S)
            if audio.shape[0] not in (1, 2):
                raise ValueError(
                    f"{path}: audio must be mono (S,) or (C, S) with C in 1, 2, got {audio.shape}"
                )
            layout = "mono" if audio.shape[0] == 1 else "stereo"
            audio_stream = container.add_stream("aac", rate=sample_rate, layout=layout)

        if video_stream is not None:
            for i, image in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(
                    np.ascontiguousarray(image), format="gray" if gray else "rgb24"
                )
                frame.pts = round(frame_times[i] * 1000) if frame_times is not None else i
                frame.time_base = time_base
                container.mux(video_stream.encode(frame))
            container.mux(video_stream.encode(None))
        if audio_stream is not None:
            chunk = 1024  # AAC's frame size; the encoder buffers other sizes itself
            for lo in range(0, audio.shape[1], chunk):
                frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(audio[:, lo : lo + chunk]), format="fltp", layout=layout
                )
                frame.sample_rate = sample_rate
                frame.pts = lo
                container.mux(audio_stream.encode(frame))
            container.mux(audio_stream.encode(None))
    return path


def read_frame_folder(folder: str | Path, num_segments: int) -> np.ndarray:
    """(T, H, W, 3) uint8 frames from a folder of extracted jpgs, picked as the reference loaders do: files
    ``linspace(1, n, T, dtype=int)`` (1-based) of the n sorted ones, whatever rate they were extracted at."""
    from PIL import Image  # only this layout needs Pillow

    folder = Path(folder)
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))  # [] if none
    if not files:
        raise MediaError(folder, "no extracted frames (expected NNNN.jpg files)")
    picks = np.linspace(1, len(files), num_segments, dtype=int)
    frames = []
    for index in picks:
        try:
            with Image.open(files[index - 1]) as image:
                frames.append(np.asarray(image.convert("RGB")))
        except OSError as err:
            raise MediaError(files[index - 1], f"cannot decode image: {err}") from err
    if len({f.shape for f in frames}) != 1:
        raise MediaError(folder, f"frames differ in size: {sorted({f.shape for f in frames})}")
    return np.stack(frames)  # (T, H, W, 3)

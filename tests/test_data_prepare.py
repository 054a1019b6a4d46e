"""prepare_ave: the cache format, bad clips reported, config checks, and resuming after a kill."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from avadapt.data.cache import BAD_CLIPS, CACHE_JSON, CacheConfigError, CacheSettings
from avadapt.data.fbank import FbankConfig, segment_fbank
from avadapt.data.media import read_clip
from avadapt.data.prepare import BadClip, PrepareSummary
from avadapt.data.transforms import VideoTransform, VideoTransformConfig, as_video_tensor
from avadapt.errors import MissingMediaError
from avadapt.tasks.ave.dataset import AVEDataset
from avadapt.tasks.ave.prepare import prepare_ave
from avadapt.tasks.ave.synth import synthesize_ave
from tests.media_helpers import cached_clip_info

CLIPS = 6
SIZE = 32  # cached frame size: small keeps the test fast
BAD_ROWS = ["Bark&zzzCorrupt1&good&0&10", "Bark&zzzMissing1&good&2&6"]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A synthetic AVE root plus one corrupt mp4 and one row whose mp4 does not exist."""
    root = synthesize_ave(tmp_path_factory.mktemp("ave"), clips=CLIPS, seed=3, num_classes=3).root
    with (root / "Annotations.txt").open("a") as f:
        f.write("".join(f"{row}\n" for row in BAD_ROWS))
    with (root / "testSet.txt").open("a") as f:
        f.write(f"{BAD_ROWS[0]}\n")
    (root / "AVE" / "zzzCorrupt1.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    return root


@pytest.fixture(scope="module")
def cache(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache")
    summary = prepare_ave(root, out, workers=1, image_size=SIZE, progress=False)
    return out, summary


def cache_contents(folder: Path) -> dict[str, tuple]:
    """Every cached clip's tensors and info, for comparing two caches."""
    contents = {}
    for path in sorted(folder.glob("*.safetensors")):
        tensors = load_file(str(path))
        contents[path.name] = (tensors["frames"], tensors["fbank"], cached_clip_info(path), path.read_bytes())
    return contents


def assert_same_cache(first: Path, second: Path) -> None:
    a, b = cache_contents(first), cache_contents(second)
    assert sorted(a) == sorted(b)
    for name in a:
        assert torch.equal(a[name][0], b[name][0]) and torch.equal(a[name][1], b[name][1]), name
        assert a[name][2] == b[name][2] and a[name][3] == b[name][3], name  # byte-identical files
    assert json.loads((first / CACHE_JSON).read_text()) == json.loads((second / CACHE_JSON).read_text())


def test_summary_and_bad_clip_report(cache, root, capsys):
    out, summary = cache
    assert (summary.total, summary.done, summary.skipped_existing) == (CLIPS + 2, CLIPS, 0)
    assert sorted(b.video_id for b in summary.failed) == ["zzzCorrupt1", "zzzMissing1"]

    report = (out / BAD_CLIPS).read_text().splitlines()
    assert report[0] == "video_id\tpath\treason"
    rows = {line.split("\t")[0]: line.split("\t") for line in report[1:]}
    assert rows["zzzMissing1"][1:] == [str(root / "AVE" / "zzzMissing1.mp4"), "file not found"]
    assert rows["zzzCorrupt1"][1] == str(root / "AVE" / "zzzCorrupt1.mp4")
    assert "cannot be opened" in rows["zzzCorrupt1"][2]
    assert not list(out.glob("zzz*"))  # failed clips leave no cache file behind


def test_summary_reports_throughput_and_counts(tmp_path):
    failed = [BadClip("zzzMissing1", tmp_path / "AVE" / "zzzMissing1.mp4", "file not found")]
    summary = PrepareSummary(tmp_path, total=8, done=6, skipped_existing=1, failed=failed, seconds=4.0,
                             command="prepare_ave")
    assert summary.clips_per_second == 1.5
    assert str(summary) == (f"prepare_ave: 6 clips written, 1 already cached, 1 failed (listed in "
                            f"{tmp_path / BAD_CLIPS}) in 4.0 s (1.50 clips/s) -> {tmp_path}")
    empty = PrepareSummary(tmp_path, total=0, done=0, skipped_existing=0, failed=[], seconds=0.0, command="p")
    assert empty.clips_per_second == 0


def test_cache_format(cache, root):
    out, _ = cache
    settings = CacheSettings.read(out)
    assert settings == CacheSettings(image_size=SIZE, dataset="ave")
    assert json.loads((out / CACHE_JSON).read_text())["format"] == "avadapt-clip-cache"

    path = next(out.glob("*.safetensors"))
    tensors = load_file(str(path))
    assert tensors["frames"].dtype == torch.uint8 and tensors["frames"].shape == (10, 3, SIZE, SIZE)
    assert tensors["fbank"].dtype == torch.float16 and tensors["fbank"].shape == (10, 1, 128, 102)
    assert cached_clip_info(path)["video_id"] == path.stem

    clip = read_clip(root / "AVE" / f"{path.stem}.mp4")
    geometry = VideoTransform(VideoTransformConfig(input_size=(SIZE, SIZE), crop_pct=1.0))
    assert torch.equal(tensors["frames"], geometry.geometry(as_video_tensor(clip.frames)))
    torch.testing.assert_close(
        tensors["fbank"].float(), segment_fbank(clip.wave, FbankConfig(), 10), atol=4e-3, rtol=0
    )


def test_rerun_skips_finished_clips_and_retries_failed_ones(cache, root):
    out, _ = cache
    again = prepare_ave(root, out, workers=1, image_size=SIZE, progress=False)
    assert (again.done, again.skipped_existing, len(again.failed)) == (0, CLIPS, 2)


def test_other_settings_on_an_existing_cache_are_refused(cache, root):
    out, _ = cache
    with pytest.raises(CacheConfigError, match=r"cache.json: .*image_size: cache 32, wanted 64"):
        prepare_ave(root, out, image_size=64, progress=False)
    with pytest.raises(CacheConfigError, match="fbank.num_mel_bins: cache 128, wanted 64"):
        prepare_ave(root, out, image_size=SIZE, fbank=FbankConfig(num_mel_bins=64), progress=False)


def test_a_cache_is_read_only_with_the_frame_geometry_it_was_prepared_with(cache, root):
    out, _ = cache  # prepared with centre crops
    squash = VideoTransform(VideoTransformConfig(input_size=(SIZE, SIZE), crop_pct=1.0, crop_mode="squash"))
    with pytest.raises(CacheConfigError, match="crop_mode: cache 'center', wanted 'squash'"):
        AVEDataset(root, "train", cache_dir=out, transform=squash)
    with pytest.raises(CacheConfigError, match="crop_mode: cache 'center', wanted 'squash'"):
        prepare_ave(root, out, image_size=SIZE, crop_mode="squash", progress=False)


def test_dataset_reads_the_cache(cache, root):
    out, _ = cache
    transform = VideoTransform(VideoTransformConfig(input_size=(SIZE, SIZE)))
    train = AVEDataset(root, "train", cache_dir=out, transform=transform)
    assert train.source == "cache"

    item = train[0]
    assert item["video"].shape == (10, 3, SIZE, SIZE) and item["video"].dtype == torch.float32
    assert item["audio"].shape == (10, 1, 128, 102) and item["audio"].dtype == torch.float32
    assert item["labels"].shape == (10,)
    # training augmentation works on the cached crops
    augmenting = VideoTransform(VideoTransformConfig(input_size=(SIZE, SIZE), train=True))
    assert AVEDataset(root, "train", cache_dir=out, transform=augmenting)[0]["video"].shape == (
        10,
        3,
        SIZE,
        SIZE,
    )


def test_dataset_with_other_settings_than_the_cache(cache, root):
    out, _ = cache
    with pytest.raises(CacheConfigError, match="fbank.num_mel_bins: cache 128, wanted 64"):
        AVEDataset(root, "train", cache_dir=out, fbank=FbankConfig(num_mel_bins=64),
                   transform=VideoTransform(VideoTransformConfig(input_size=(SIZE, SIZE))))  # fmt: skip
    with pytest.raises(CacheConfigError, match="image_size: cache 32, wanted 224"):
        AVEDataset(root, "train", cache_dir=out)


def cache_recording(cache_dir: Path, copy: Path, dataset: str | None) -> Path:
    """A copy of a cache whose cache.json records ``dataset`` (None: records no dataset at all)."""
    shutil.copytree(cache_dir, copy)
    values = json.loads((copy / CACHE_JSON).read_text())
    values.pop("dataset")
    (copy / CACHE_JSON).write_text(json.dumps(values if dataset is None else {**values, "dataset": dataset}))
    return copy


@pytest.mark.parametrize("other", ["avs_s4", "music_avqa"])
def test_a_cache_of_another_dataset_is_not_read_as_ave(cache, root, tmp_path, other):
    out = cache_recording(cache[0], tmp_path / "other", other)
    transform = VideoTransform(VideoTransformConfig(input_size=(SIZE, SIZE)))
    wrong = rf"{out / CACHE_JSON}: the cache was prepared with other settings — dataset: cache '{other}', wanted 'ave'"
    with pytest.raises(CacheConfigError, match=wrong):
        AVEDataset(root, "train", cache_dir=out, transform=transform)
    with pytest.raises(CacheConfigError, match=wrong):
        prepare_ave(root, out, image_size=SIZE, progress=False)


def test_a_cache_that_records_no_dataset_is_read(cache, root, tmp_path):
    out = cache_recording(cache[0], tmp_path / "unrecorded", None)
    assert CacheSettings.read(out).dataset is None
    transform = VideoTransform(VideoTransformConfig(input_size=(SIZE, SIZE)))
    assert len(AVEDataset(root, "train", cache_dir=out, transform=transform)) == len(AVEDataset(root, "train"))


def test_dataset_names_clips_that_failed_to_prepare(cache, root):
    out, _ = cache
    transform = VideoTransform(VideoTransformConfig(input_size=(SIZE, SIZE)))
    with pytest.raises(MissingMediaError, match=r"zzzCorrupt1: expected .*zzzCorrupt1.safetensors") as info:
        AVEDataset(root, "test", cache_dir=out, transform=transform)
    assert BAD_CLIPS in str(info.value)


KILLABLE = """
import sys, threading
import avadapt.tasks.ave.prepare as prepare

finish_clip = prepare.prepare_clip
finished = []

def stop_after_two(*args, **kwargs):  # two clips written, then wait to be killed
    finish_clip(*args, **kwargs)
    finished.append(args[0])
    if len(finished) == 2:
        threading.Event().wait()

prepare.prepare_clip = stop_after_two
prepare.prepare_ave(sys.argv[1], sys.argv[2], workers=1, image_size=int(sys.argv[3]), progress=False)
"""


def test_killed_run_resumes_to_the_same_cache(cache, root, tmp_path):
    reference, _ = cache
    out = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-c", KILLABLE, str(root), str(out), str(SIZE)],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while len(list(out.glob("*.safetensors"))) < 2:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "prepare_ave wrote no clips in time"
            time.sleep(0.02)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the whole session we started: the run and nothing else
        process.wait()
    assert len(list(out.glob("*.safetensors"))) == 2  # the run stopped after its second clip
    # a file a killed run was writing: only ever under its temporary name
    (out / "half.safetensors.12345.tmp").write_bytes(b"half-written")

    resumed = prepare_ave(root, out, workers=1, image_size=SIZE, progress=False)

    assert resumed.skipped_existing == 2 and resumed.done == CLIPS - 2
    assert not list(out.glob("*.tmp"))
    assert_same_cache(out, reference)
    assert (out / BAD_CLIPS).read_text() == (reference / BAD_CLIPS).read_text()


KILLED_WHILE_WRITING = """
import os, signal, sys
import safetensors.torch
import avadapt.data.cache as cache
import avadapt.tasks.ave.prepare as prepare

kill_at = int(sys.argv[4])
written = []

def save_file(tensors, path, metadata=None):  # the clip numbered kill_at dies half-written
    data = safetensors.torch.save(tensors, metadata=metadata)
    if len(written) == kill_at:
        with open(path, "wb") as file:
            file.write(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    with open(path, "wb") as file:
        file.write(data)
    written.append(path)

cache.save_file = save_file
prepare.prepare_ave(sys.argv[1], sys.argv[2], workers=1, image_size=int(sys.argv[3]), progress=False)
"""
KILL_SEED = 20240611


def test_run_killed_while_writing_a_random_clip_resumes_to_the_same_cache(cache, root, tmp_path):
    reference, _ = cache
    kill_at = random.Random(KILL_SEED).randrange(CLIPS)  # clips finished before the kill
    out = tmp_path / "killed"
    done = subprocess.run([sys.executable, "-c", KILLED_WHILE_WRITING, str(root), str(out), str(SIZE), str(kill_at)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    assert len(list(out.glob("*.safetensors"))) == kill_at, f"killed while writing clip {kill_at}"
    assert len(list(out.glob("*.tmp"))) == 1  # the clip it was writing, under its temporary name only

    resumed = prepare_ave(root, out, workers=1, image_size=SIZE, progress=False)

    assert (resumed.skipped_existing, resumed.done) == (kill_at, CLIPS - kill_at)
    assert not list(out.glob("*.tmp"))
    assert_same_cache(out, reference)


def test_worker_processes_write_the_same_cache(cache, root, tmp_path):
    reference, _ = cache
    summary = prepare_ave(root, tmp_path / "parallel", workers=2, image_size=SIZE, progress=False)
    assert summary.done == CLIPS and len(summary.failed) == 2
    assert_same_cache(tmp_path / "parallel", reference)


def test_settings_round_trip():
    settings = CacheSettings(image_size=96, crop_pct=0.875, fbank=FbankConfig(num_mel_bins=64), dataset="x")
    assert CacheSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    assert np.isclose(settings.fbank.std, 3.2001)
    with pytest.raises(ValueError, match="interpolation"):
        CacheSettings(interpolation="lanczos", dataset="x")
    with pytest.raises(TypeError, match="dataset"):  # a cache always says whose clips it holds
        CacheSettings(image_size=96)

"""The ``synth`` and ``prepare`` commands as the README writes them."""

from __future__ import annotations

import json

from safetensors import safe_open

from avadapt.cli import main


def test_synth_then_prepare_on_the_command_line(tmp_path, capsys):
    root, cache = tmp_path / "ave", tmp_path / "cache"
    main(["synth", "ave", "--out", str(root), "--clips", "3", "--seed", "1"])
    assert len(list((root / "AVE").glob("*.mp4"))) == 3
    assert len((root / "Annotations.txt").read_text().splitlines()) == 1 + 3  # header + rows
    main(["prepare", "ave", "--root", str(root), "--out", str(cache), "--image-size", "32"])
    assert "3 clips written" in capsys.readouterr().out
    files = sorted(cache.glob("*.safetensors"))
    assert len(files) == 3 and json.loads((cache / "cache.json").read_text())["image_size"] == 32
    with safe_open(files[0], "pt") as clip:
        assert clip.get_tensor("frames").shape == (10, 3, 32, 32)
        assert clip.get_tensor("fbank").shape == (10, 1, 128, 102)  # the vit front end's by default

    # a named front end, with single fbank fields changed
    swin = tmp_path / "cache_swin"
    main(["prepare", "ave", "--root", str(root), "--out", str(swin), "--image-size", "32",
          "--audio-front-end", "lavish_swin_ave", "--target-frames", "96"])
    fbank = json.loads((swin / "cache.json").read_text())["fbank"]
    assert (fbank["num_mel_bins"], fbank["target_frames"], fbank["frame_shift_ms"]) == (192, 96, 5.2)
    assert (fbank["mean"], fbank["std"]) == (-4.9848, 3.7080)


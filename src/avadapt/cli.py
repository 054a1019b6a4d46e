"""The ``avadapt`` command: thin wrappers over library functions, no logic of its own.

``avadapt fit | validate | test`` are LightningCLI subcommands (options = the typed constructor arguments of
the training module, data module and trainer; ``--config FILE``); ``params``, ``synth``, ``prepare``, ``predict``,
``ask`` and ``demo`` are plain commands parsed here; ``pretrain``, ``zeroshot``, ``fewshot`` and ``embed`` (the
text model: :mod:`avadapt.text`) are parsed in :mod:`avadapt.text.cli`.

A file, folder or option that cannot work prints one line, ``avadapt: error: <file>: <problem>``;
``avadapt --debug COMMAND ...`` (or AVADAPT_DEBUG=1) shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from avadapt.audio_front_ends import DEFAULT_AUDIO_FRONT_END
from avadapt.errors import AVAdaptError, DatasetError, OptionError
from avadapt.text.cli import TEXT_COMMANDS, TEXT_DEMO, add_text_commands

# Model code (timm, torch tensors) is imported inside the commands: torch's huge-page switch
# (avadapt.kernels.heap) only takes effect before the first tensor exists.

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test")


def _tasks() -> tuple[str, str]:
    """The registered tasks as help text (``ave | avs | …``, plugins included) and the default task."""
    from avadapt._registry import TASKS
    from avadapt.tasks import DEFAULT_TASK

    return " | ".join(TASKS.names()), DEFAULT_TASK


def _add_params(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("params", help="trainable / total parameter counts, built without weights")
    p.add_argument("--backbone", default="vit_base_patch16_clip_224", help="timm backbone name")
    p.add_argument("--method", default="stg_cma")
    names, default = _tasks()
    p.add_argument("--task", default=default, help=f"{names} (default: {default})")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--preset", help="method preset, e.g. tiny | base (STG-CMA)")
    group.add_argument("--ratio", help="adapter bottleneck ratio, e.g. 1/16 or 0.0625")
    p.add_argument("--audio-backbone",
                   help="a separate audio encoder (methods that take one, e.g. dg_sct); default: the method paper's "
                        "(DG-SCT: an HTS-AT-shaped Swin), 'shared' for none")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--table", action="store_true",
                   help="every preset row (method × backbone × task) next to the papers' figures")
    p.add_argument("--markdown", action="store_true", help="with --table: print a Markdown table")
    p.set_defaults(run=_run_params)


def _run_params(args: argparse.Namespace) -> None:
    if args.table:
        from avadapt.param_table import format_table, parameter_table

        entries = parameter_table()
        print(json.dumps(entries, indent=2) if args.json else format_table(entries, markdown=args.markdown))
        return
    from avadapt.models import parameter_report
    from avadapt.param_table import build_as_published

    options = {k: v for k, v in (("preset", args.preset), ("ratio", args.ratio)) if v is not None}
    if args.audio_backbone is not None:  # "shared": no separate encoder, the visual backbone hears too
        options["audio_backbone"] = None if args.audio_backbone == "shared" else args.audio_backbone
    report = parameter_report(build_as_published(args.backbone, args.method, args.task, **options))
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['method']} on {report['backbone']} ({report['task']}): "
          f"trainable {report['trainable'] / 1e6:.2f}M / total {report['total'] / 1e6:.2f}M "
          f"({report['trainable_percent']:.2f}%)")
    for role, count in report["breakdown"].items():
        print(f"  {role:<32} {count:>12,}")


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="decode every clip of a dataset once into a cache of frames + fbank (resumable)")
    p.add_argument("task", help=f"task whose dataset layout to read: {_tasks()[0]}")
    p.add_argument("--setting", help="the task's dataset setting, e.g. s4 | ms3 for avs (default: the task's own)")
    p.add_argument("--root", required=True, help="the dataset's folder (AVE: Annotations.txt, the split files and "
                                                 "AVE/<id>.mp4)")
    p.add_argument("--out", required=True, help="cache folder to write")
    p.add_argument("--media-root", help="where the media lives, if not under ROOT")
    p.add_argument("--workers", type=int, default=1, help="decoding processes")
    p.add_argument("--image-size", type=int, default=224, help="square frame size (the backbone's input size)")
    p.add_argument("--crop-pct", type=float, default=1.0, help="centre crop fraction (timm data config crop_pct)")
    p.add_argument("--crop-mode", default="center",
                   help="center: resize keeping the aspect ratio, then centre-crop; squash: resize the whole frame "
                        "to the square size (the model's model.video_transform.crop_mode)")
    p.add_argument("--interpolation", default="bicubic", help="frame resampling (timm data config interpolation)")
    p.add_argument("--audio-front-end", default=DEFAULT_AUDIO_FRONT_END,
                   help="named audio front end whose fbank settings to use (avadapt.audio_front_ends; "
                        "the model's model.audio_front_end)")
    p.add_argument("--num-mel-bins", type=int, help="fbank mel bins (default: the front end's)")
    p.add_argument("--target-frames", type=int, help="fbank frames per segment (default: the front end's)")
    p.set_defaults(run=_run_prepare)


def _dataset_of(task: str, setting: str | None) -> type:
    """The dataset class a task reads: ``<task>_<setting>`` when a setting is named, else the task's own."""
    from avadapt._registry import DATASETS
    from avadapt.tasks import get_task

    return DATASETS.get(f"{task}_{setting}" if setting else get_task(task).dataset)


def _run_prepare(args: argparse.Namespace) -> None:
    from avadapt.audio_front_ends import audio_front_end

    changes = {k: v for k, v in (("num_mel_bins", args.num_mel_bins), ("target_frames", args.target_frames))
               if v is not None}
    fbank = audio_front_end(args.audio_front_end, changes).fbank
    summary = _dataset_of(args.task, args.setting).prepare(
        args.root, args.out, workers=args.workers, image_size=args.image_size, fbank=fbank,
        media_root=args.media_root, crop_pct=args.crop_pct, crop_mode=args.crop_mode,
        interpolation=args.interpolation)
    if summary.failed:
        raise DatasetError(f"{Path(args.out) / 'bad_clips.tsv'}: {len(summary.failed)} clip(s) could not be "
                           "decoded (listed there with the reason)")


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="synthetic clips (real media files) in a task's native dataset layout")
    p.add_argument("task", help=f"task whose dataset layout to write: {_tasks()[0]}")
    p.add_argument("--setting", help="the task's dataset setting, e.g. s4 | ms3 for avs (default: the task's own)")
    p.add_argument("--out", required=True, help="folder to write (AVE: AVE/<id>.mp4, Annotations.txt, split files)")
    p.add_argument("--clips", type=int, default=100, help="number of clips")
    p.add_argument("--seed", type=int, default=0, help="same seed, same files")
    p.add_argument("--classes", type=int, help="number of classes, with real category names (default: the "
                                               "dataset's choice; AVE: 4)")
    p.set_defaults(run=_run_synth)


def _run_synth(args: argparse.Namespace) -> None:
    summary = _dataset_of(args.task, args.setting).synthesize(args.out, clips=args.clips, seed=args.seed,
                                                              num_classes=args.classes)
    print(summary)


def _add_adapter_loading(p: argparse.ArgumentParser) -> None:
    """Where an adapter's frozen backbone comes from, and the device: shared by ``predict`` and ``ask``."""
    weights = p.add_mutually_exclusive_group()
    weights.add_argument("--weights", help="backbone weights file (default: the file recorded at training time, by "
                                           "absolute path); it must have the same bytes (sha256) as that file")
    weights.add_argument("--pretrained", action="store_true", help="backbone weights from its timm tag")
    p.add_argument("--audio-weights", help="weights file of a separate audio encoder (DG-SCT's HTS-AT; default: the "
                                           "file recorded at training time), checked by sha256 as --weights is")
    p.add_argument("--weights-mismatch", choices=("refuse", "ok"), default="refuse",
                   help="a backbone file whose sha256 differs from the one recorded at training time: 'refuse' "
                        "(default) stops with an error, 'ok' uses it anyway with a warning (predictions of an "
                        "adapter on other backbone weights may be wrong)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda")


def _load_adapter(args: argparse.Namespace):
    from avadapt.adapter_files import load_adapter

    return load_adapter(args.adapter, weights=args.weights, pretrained=True if args.pretrained else None,
                        audio_weights=args.audio_weights, weights_mismatch=args.weights_mismatch,
                        map_location=args.device)


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="the adapter's task on videos: a JSON result and a picture per video (AVE: "
                                       "per-second event labels and a timeline; AVS: masks over the frames; AVQA: "
                                       "the answers to --question and where the model looked)")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video files with an audio track, any length; folders (searched for video files); quoted "
                        "globs ('clips/**/*.mp4'); @LIST, a text file of inputs, one a line. One file: writes "
                        "OUT.json and OUT.png; more: appends to OUT/predictions.jsonl")
    p.add_argument("--adapter", required=True, help="adapter directory (config.json + adapter.safetensors)")
    p.add_argument("--out", help="one file: output path without suffix, for OUT.json and OUT.png (default: "
                                 "predictions/<video name>); more: a folder (default: predictions) for "
                                 "predictions.jsonl, one line per video (the result and timings, or the error of a "
                                 "file that cannot be read); videos with a line there are skipped, so a stopped "
                                 "run resumes when run again")
    p.add_argument("--pictures", action="store_true",
                   help="with more than one file: also write each video's picture as OUT/<video name>.png")
    p.add_argument("--question", help="a question about the video, for a question-answering adapter")
    p.add_argument("--labels", help="ground truth in the task's form (AVE: an annotation row "
                                    "'Category&VideoID&Quality&Start&End' or an annotation file holding the video's "
                                    "row; AVS: a folder of mask PNGs, one per second; AVQA: the expected answer)")
    p.add_argument("--top", type=int, default=3, help="how many alternatives the result lists (AVE: classes per "
                                                      "second; AVQA: answers; default 3)")
    p.add_argument("--batch", type=int, default=4, help="windows per forward pass, taken across videos (default 4)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                   help="bf16: autocast on CUDA, and on a CPU with native bf16 (AVX-512 BF16 or AMX); another CPU "
                        "warns and runs fp32 (default fp32)")
    _add_adapter_loading(p)
    p.set_defaults(run=_run_predict)


def _run_predict(args: argparse.Namespace) -> None:
    from avadapt.prediction import expand_inputs, predict_collection, predict_video, write_prediction

    single = (len(args.inputs) == 1 and not args.inputs[0].startswith("@") and not Path(args.inputs[0]).is_dir()
              and (Path(args.inputs[0]).exists() or not any(char in args.inputs[0] for char in "*?[")))
    videos = expand_inputs(args.inputs)  # a list or folder that cannot work stops here, before the model loads
    model = _load_adapter(args)
    if single:
        out = Path(args.out) if args.out else Path("predictions") / Path(args.inputs[0]).stem
        prediction = predict_video(model, args.inputs[0], question=args.question, batch_windows=args.batch,
                                   precision=args.precision)
        result = write_prediction(prediction, out, ground_truth=args.labels, top=args.top)
        print(result["summary"])
        if "agreement" in result:
            print(result["agreement"])
        print(f"wrote {result['json']} and {result['png']}")
        return
    summary = predict_collection(model, videos, args.out or "predictions", pictures=args.pictures,
                                 ground_truth=args.labels, top=args.top, question=args.question,
                                 batch_windows=args.batch, precision=args.precision, progress=None)
    for video, problem in summary.failed:
        print(f"avadapt: skipped {video}: {problem}", file=sys.stderr)
    print(f"{len(summary.predicted)} predicted, {len(summary.failed)} failed, {len(summary.skipped)} already in "
          f"{summary.results}")


def _add_ask(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ask", help="answer a question about a video with a question-answering adapter (top answers; "
                                   "--out: a picture of where the model looked)")
    p.add_argument("video", help="a video file with an audio track, any length")
    p.add_argument("question", help='e.g. "How many instruments are sounding in the video?"')
    p.add_argument("--adapter", required=True, help="adapter directory of a question-answering model")
    p.add_argument("--out", help="output path without suffix; writes OUT.png and OUT.json")
    p.add_argument("--top", type=int, default=3, help="how many answers to print (default 3)")
    _add_adapter_loading(p)
    p.set_defaults(run=_run_ask)


def _run_ask(args: argparse.Namespace) -> None:
    from avadapt.prediction import ask

    result = ask(_load_adapter(args), args.video, args.question, top=args.top, out=args.out)
    if result["unknown_words"]:
        print(f"not in the adapter's vocabulary (read as unknown): {', '.join(result['unknown_words'])}")
    for rank, entry in enumerate(result["answers"], 1):
        print(f"{rank}. {entry['answer']} ({entry['probability']:.3f})")
    if "png" in result:
        print(f"wrote {result['png']} and {result['json']}")


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="synthesise a small dataset of a task, train its main method and comparisons on a "
                                    "tiny random ViT (CPU), predict one test clip")
    p.add_argument("--task", help="the task whose demo runs (default: the default task; an unknown one lists the "
                                  f"demos); {TEXT_DEMO}: classification from class names with CLIP and CLAP")
    p.add_argument("--method", help="a method's variant of the task's demo, where the task declares one (a method "
                                    "whose encoders differ from the task demo's, against the probe on the same "
                                    "encoders); default: the task's demo (its main method and comparisons)")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--precision", help="Lightning precision (default: bf16-mixed on a CPU with native bf16, else 32)")
    p.add_argument("--seeds", type=int, default=1,
                   help="train the comparison over this many seeds (the demo's seed and the next ones, same data and "
                        "frozen encoders) and add their mean ± std to metrics.json (default 1)")
    p.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> None:
    if args.task == TEXT_DEMO:
        from avadapt.text.demo import run_text_demo

        run_text_demo(args.out, precision=args.precision)
        return
    from avadapt.demo import run_demo

    run_demo(args.out, task=args.task, precision=args.precision, method=args.method, seeds=args.seeds)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avadapt", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    # read by main() before parsing (LightningCLI subcommands never see it); declared here for --help
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error instead of one line (also AVADAPT_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in LIGHTNING_SUBCOMMANDS:  # listed for --help; parsed by LightningCLI
        sub.add_parser(name, help=f"LightningCLI {name} (avadapt {name} --help for its options)"
                       + ("; --seeds 0,1,2 runs it once per seed and writes the mean ± std of its metrics"
                          if name == "fit" else ""), add_help=False)
    _add_params(sub)
    _add_synth(sub)
    _add_prepare(sub)
    _add_predict(sub)
    _add_ask(sub)
    _add_demo(sub)
    add_text_commands(sub)
    return parser


def _prepare_cpu_training() -> None:
    """Huge pages for a process that will train on the CPU, before its first tensor (``avadapt.kernels.heap``)."""
    import torch

    from avadapt.kernels import enable_huge_pages

    if not torch.cuda.is_available():
        enable_huge_pages()


def main(argv: list[str] | None = None) -> None:
    """Run ``avadapt [--debug] COMMAND ...``; errors a user can fix end the process with one line on stderr.

    An :class:`~avadapt.errors.AVAdaptError` (a media file, annotation, dataset layout, adapter directory,
    weights file or option value that cannot work) prints ``avadapt: error: <file>: <problem>`` and exits
    with status 2 for an :class:`~avadapt.errors.OptionError` (as argparse does for a bad option) and 1 for
    the others. ``--debug`` before the command, or the environment variable ``AVADAPT_DEBUG=1``, lets the
    error propagate with its traceback instead. Any other exception is a bug and always keeps its traceback.
    """
    from_console = argv is None
    argv = list(sys.argv[1:] if from_console else argv)
    debug = os.environ.get("AVADAPT_DEBUG", "") not in ("", "0")
    if argv[:1] == ["--debug"]:
        debug, argv = True, argv[1:]
        if from_console:
            sys.argv[1:] = argv  # LightningCLI reads the console's arguments from sys.argv itself
    try:
        _dispatch(argv)
    except AVAdaptError as err:
        if debug:
            raise
        message = " ".join(str(err).split())  # one line, whatever the message's layout
        print(f"avadapt: error: {message}", file=sys.stderr)
        raise SystemExit(2 if isinstance(err, OptionError) else 1) from None


def _dispatch(argv: list[str]) -> None:
    if argv and argv[0] in ("fit", "demo", *TEXT_COMMANDS):
        _prepare_cpu_training()
    if argv and argv[0] in LIGHTNING_SUBCOMMANDS:
        from avadapt.training.cli import run_lightning

        run_lightning(argv)
        return
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()

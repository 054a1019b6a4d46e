"""``avadapt pretrain | zeroshot | fewshot | embed``: the text model's commands, thin wrappers over
:mod:`avadapt.text.run`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from avadapt.errors import OptionError

TEXT_COMMANDS = ("pretrain", "zeroshot", "fewshot", "embed")
TEXT_DEMO = "zeroshot"  # ``avadapt demo --task zeroshot``: the text model's demo (avadapt.text.demo)


def _encoder_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("encoders (CLIP image + text, CLAP audio + text; local files only)")
    g.add_argument("--clip-model", help="open_clip model name (default ViT-B-32-quickgelu, the reference's "
                                        "CLIP ViT-B/32), or 'tiny' (random, for tests)")
    g.add_argument("--clip-weights", help="CLIP weights: an open_clip or OpenAI CLIP file")
    g.add_argument("--clap-model", help="CLAP shape (default HTSAT-tiny with RoBERTa-base), or 'tiny'")
    g.add_argument("--clap-weights", help="CLAP checkpoint in LAION's released format "
                                          "(630k-audioset-fusion-best.pt)")
    g.add_argument("--clap-tokenizer", help="folder with RoBERTa's vocab.json and merges.txt")


def _encoders(args: argparse.Namespace) -> dict[str, Any] | None:
    fields = {"clip_model": args.clip_model, "clip_weights": args.clip_weights, "clap_model": args.clap_model,
              "clap_weights": args.clap_weights, "clap_tokenizer": args.clap_tokenizer}
    fields = {k: v for k, v in fields.items() if v is not None}
    return fields or None


def _data_options(p: argparse.ArgumentParser, task_help: str) -> None:
    p.add_argument("root", help="the dataset's annotation root (the task's native layout)")
    p.add_argument("--task", help=task_help)
    p.add_argument("--dataset", help="a registered dataset name instead of the task's own (e.g. avar_vggsound)")
    p.add_argument("--cache", help="a cache written by `avadapt prepare ... --audio-front-end clap` at CLIP's "
                                   "image size")
    p.add_argument("--batch-size", type=int, default=4)


def _training_options(p: argparse.ArgumentParser, epochs: int) -> None:
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--lr", type=float, default=3e-4, help="Adam's rate, halved at epochs 10, 20 and 30 (DG-SCT's)")
    p.add_argument("--seed", type=int, default=0, help="seeds the trained modules, the batch order and the shots")
    p.add_argument("--precision", default="32-true", help="Lightning precision (bf16-mixed on a GPU)")


def _dataset(args: argparse.Namespace) -> str:
    if args.dataset:
        return args.dataset
    if not args.task:
        raise OptionError("name the data: --task TASK (its dataset) or --dataset NAME")
    from avadapt.tasks import get_task

    return get_task(args.task).dataset


def add_text_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="audio-visual pretraining with text (DG-SCT's few/zero-shot setting): "
                                        "a corpus of clips with class names; adapter-only output, resumable")
    _data_options(p, "a recognition task whose dataset is the corpus (avar; --dataset avar_vggsound for VGGSound's "
                     "csv, avar_folder for a folder of clips with labels.csv)")
    _encoder_options(p)
    p.add_argument("--out", required=True, help="run folder: checkpoints/ (resumed from last.ckpt) and adapter/")
    _training_options(p, epochs=10)
    p.set_defaults(run=_run_pretrain)

    p = sub.add_parser("zeroshot", help="classify clips from class names only (a pretrained text adapter, or "
                                        "the frozen encoders)")
    _data_options(p, "the task to score (ave: segment-level and clip classification; avvp: LLP clip "
                     "classification; avar: clip classification)")
    _encoder_options(p)
    p.add_argument("--adapter", help="a text adapter folder (avadapt pretrain / fewshot); without it, the frozen "
                                     "encoders given by --clip-weights/--clap-weights")
    p.add_argument("--classes", help="class names, one per line, in the dataset's label order (default: the "
                                     "dataset's own)")
    p.add_argument("--split", default="test", choices=("val", "test"))
    p.add_argument("--background", default="none", choices=("none", "threshold", "prompt"),
                   help="background seconds (AVE): none = score the event names only, as the reference does; "
                        "threshold = background where no name reaches --threshold; prompt = a 'background' name")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--out", help="write the scores to this JSON file")
    p.set_defaults(run=_run_zeroshot)

    p = sub.add_parser("fewshot", help="train the prompts and CLIP-Adapters on K clips per class, then score")
    _data_options(p, "the task (ave, avvp, avar)")
    _encoder_options(p)
    p.add_argument("--shots", type=int, required=True, help="clips per class drawn from the training split")
    p.add_argument("--adapter", help="start from this pretrained text adapter")
    p.add_argument("--train-adapters", action="store_true", help="train DG-SCT's adapters too (as the reference's "
                                                                  "few-shot scripts do)")
    p.add_argument("--out", required=True, help="run folder: checkpoints/, shots.json, scores.json, adapter/")
    _training_options(p, epochs=20)
    p.set_defaults(run=_run_fewshot)

    p = sub.add_parser("embed", help="a t-SNE picture of clip features by class: frozen encoders beside the "
                                     "adapted model")
    _data_options(p, "the task whose clips to show")
    _encoder_options(p)
    p.add_argument("--adapter", help="a text adapter folder")
    p.add_argument("--split", default="test", choices=("val", "test"))
    p.add_argument("--out", required=True, help="the picture (PNG)")
    p.set_defaults(run=_run_embed)


def _report(scores: dict[str, Any], out: str | None) -> None:
    for key, value in scores.items():
        if isinstance(value, float):
            print(f"{key}: {value:.4f}")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(scores, indent=2) + "\n")
        print(f"wrote {out}")


def _run_pretrain(args: argparse.Namespace) -> None:
    from avadapt.text.run import pretrain

    encoders = _encoders(args)
    if encoders is None:
        raise OptionError("pretrain needs the encoders: --clip-weights and --clap-weights (or --clip-model tiny "
                          "--clap-model tiny)")
    folder = pretrain(args.root, _dataset(args), args.out, encoders, cache=args.cache, epochs=args.epochs,
                      batch_size=args.batch_size, lr=args.lr, seed=args.seed, precision=args.precision)
    print(f"text adapter written to {folder}")


def _run_zeroshot(args: argparse.Namespace) -> None:
    from avadapt.text.run import zeroshot

    _report(zeroshot(args.root, _dataset(args), adapter=args.adapter, encoders=_encoders(args),
                     classes=args.classes, cache=args.cache, split=args.split, background=args.background,
                     threshold=args.threshold, batch_size=args.batch_size), args.out)


def _run_fewshot(args: argparse.Namespace) -> None:
    from avadapt.text.run import fewshot

    scores = fewshot(args.root, _dataset(args), args.shots, args.out, adapter=args.adapter,
                     encoders=_encoders(args), cache=args.cache, epochs=args.epochs, batch_size=args.batch_size,
                     lr=args.lr, seed=args.seed, train_adapters=args.train_adapters, precision=args.precision)
    _report(scores, str(Path(args.out) / "scores.json"))


def _run_embed(args: argparse.Namespace) -> None:
    from avadapt.text.run import embed

    picture = embed(args.root, _dataset(args), args.out, adapter=args.adapter, encoders=_encoders(args),
                    cache=args.cache, split=args.split, batch_size=args.batch_size)
    print(f"wrote {picture}")

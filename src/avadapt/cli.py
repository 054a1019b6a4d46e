"""The ``avadapt`` command: thin wrappers over library functions, no logic of its own."""

from __future__ import annotations

import argparse
import json
import sys

from avadapt.models import build_without_weights, parameter_report


def _add_params(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("params", help="trainable / total parameter counts, built without weights")
    p.add_argument("--backbone", default="vit_base_patch16_clip_224", help="timm backbone name")
    p.add_argument("--method", default="stg_cma")
    p.add_argument("--task", default="ave")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--preset", help="method preset, e.g. tiny | base (STG-CMA)")
    group.add_argument("--ratio", help="adapter bottleneck ratio, e.g. 1/16 or 0.0625")
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
    options = {k: v for k, v in (("preset", args.preset), ("ratio", args.ratio)) if v is not None}
    report = parameter_report(build_without_weights(
        backbone=args.backbone, method=args.method, task=args.task, **options))
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['method']} on {report['backbone']} ({report['task']}): "
          f"trainable {report['trainable'] / 1e6:.2f}M / total {report['total'] / 1e6:.2f}M "
          f"({report['trainable_percent']:.2f}%)")
    for role, count in report["breakdown"].items():
        print(f"  {role:<32} {count:>12,}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avadapt", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_params(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()

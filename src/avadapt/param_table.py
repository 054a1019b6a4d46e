"""The parameter table of every preset row (method × backbone × task), measured without weights.

Each row is built on PyTorch's meta device (shapes only, no memory, no download) and counted with
``parameter_report``; ``paper`` is the figure the method's paper or official code gives for that row, so the
table shows ours next to theirs. ``avadapt params --table [--markdown]`` prints it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from avadapt._registry import METHODS, TASKS
from avadapt.models import AVModel, build_without_weights, parameter_report
from avadapt.tasks import get_task

CLIP_B16 = "vit_base_patch16_clip_224.openai"
CLIP_L14 = "vit_large_patch14_clip_224.openai"
SWIN_B = "swin_base_patch4_window7_224.ms_in22k"
SWIN_L = "swin_large_patch4_window7_224.ms_in22k"
SWINV2_L = "swinv2_large_window12_192.ms_in22k"
BACKBONE_LABELS = {CLIP_B16: "CLIP ViT-B/16", CLIP_L14: "CLIP ViT-L/14", SWIN_B: "Swin-B/224 (22k)",
                   SWIN_L: "Swin-L/224 (22k)", SWINV2_L: "Swin-V2-L/192 (22k)"}


@dataclass(frozen=True)
class PresetRow:
    """One configuration worth a line in the table, with the published figure to compare against."""

    method: str
    backbone: str
    setting: str
    options: dict[str, Any] = field(default_factory=dict)
    task: str = field(kw_only=True)
    paper: str = "—"


def build_as_published(backbone: str, method: str, task: str, **options: Any) -> AVModel:
    """A weightless build of a published configuration: unless ``options`` say otherwise, with the task's
    ``counting_options`` (AVQA: a question vocabulary of the size the reference hard-codes) and the method
    paper's own audio encoder (``paper_audio_backbone``; DG-SCT: HTS-AT)."""
    defaults = dict(get_task(task).counting_options)
    paper_audio = METHODS.get(method).paper_audio_backbone
    if paper_audio is not None and "audio_backbone" not in options:
        defaults["audio_backbone"], defaults["audio_backbone_options"] = paper_audio
    return build_without_weights(backbone=backbone, method=method, task=task, **{**defaults, **options})


PRESET_ROWS: tuple[PresetRow, ...] = (
    *(PresetRow("probe", backbone, "frozen backbone", task="ave") for backbone in BACKBONE_LABELS),
    *(PresetRow("probe", backbone, "full fine-tuning", {"full_finetune": True}, task="ave")
      for backbone in BACKBONE_LABELS),
    PresetRow("stg_cma", CLIP_B16, "tiny (1/32)", {"preset": "tiny"}, task="ave", paper="3.53M (code)"),
    PresetRow("stg_cma", CLIP_B16, "base (1/16)", {"preset": "base"}, task="ave"),
    PresetRow("stg_cma", CLIP_B16, "vanilla (1/8)", {"preset": "vanilla"}, task="ave", paper="11.5M (code)"),
    PresetRow("stg_cma", CLIP_L14, "tiny (1/32)", {"preset": "tiny"}, task="ave", paper="10.68M (code)"),
    PresetRow("stg_cma", CLIP_L14, "base (1/16)", {"preset": "base"}, task="ave", paper="20.12M (code)"),
    PresetRow("stg_cma", CLIP_L14, "vanilla (1/8)", {"preset": "vanilla"}, task="ave", paper="39.0M (code)"),
    PresetRow("stg_cma", SWIN_B, "base [1/4,1/4,1/8,1/8]", {"preset": "base"}, task="ave",
              paper="10.07M (code)"),
    PresetRow("stg_cma", SWIN_B, "tiny [1/8,1/8,1/16,1/16]", {"preset": "tiny"}, task="ave",
              paper="5.6M (code)"),
    PresetRow("stg_cma", SWIN_L, "base [1/2,1/4,1/8,1/16]", {"preset": "base"}, task="ave",
              paper="19.03M (code)"),
    PresetRow("stg_cma", SWIN_L, "tiny [1/8,1/8,1/16,1/16]", {"preset": "tiny"}, task="ave",
              paper="11.74M (code)"),
    PresetRow("lavish", SWINV2_L, "AVE preset (m=2, D/8, 2 groups, BN)", {"preset": "ave", "dropout": 0.0},
              task="ave", paper="10.04M (code), 10.1M (paper)"),
    # AVS: T = 5 frames; the AVSBench decoder with TPAVI at all four levels (avadapt.tasks.avs.task).
    PresetRow("stg_cma", SWIN_L, "AVS, fusion, base [1/2,1/4,1/8,1/16]", {"preset": "base", "num_frames": 5},
              task="avs", paper="38.6M (code; 21.2M decoder)"),
    PresetRow("stg_cma", CLIP_L14, "AVS, fusion, base (1/16), ViT pyramid", {"preset": "base", "num_frames": 5},
              task="avs"),
    PresetRow("lavish", SWINV2_L, "AVS preset (m=16, D/4, 2 groups, no BN)", {"preset": "avs", "num_frames": 5},
              task="avs", paper="— (code's count includes an unused PVT-v2-b5)"),
    # AVQA: T = 10; the AVST head (avadapt.tasks.avqa.task). Figures: the AV-STFP poster's AVQA table, trainable / total.
    # Which poster row each of ours is partly a guess; the notes say why. The poster's DG-SCT row (110.4M /
    # 520.2M) has no counterpart here yet (DG-SCT's AVQA head is not built).
    PresetRow("stg_cma", SWIN_L, "AVQA, fusion, base, AVST at 1536-d", {"preset": "base"}, task="avqa",
              paper="83.0M / 278.1M (poster, 'STG-CMA Large': the 1536-d head of STG-CMA's code, our guess)"),
    PresetRow("stg_cma", SWIN_L, "AVQA, fusion, base, AVST at 512-d", {"preset": "base", "width": 512},
              task="avqa",
              paper="26.9M / 219M (poster, 'STG-CMA Base': trainable fits the code's 512-d head, total does not)"),
    PresetRow("stg_cma", CLIP_L14, "AVQA, fusion, base (1/16), AVST at 1024-d", {"preset": "base"}, task="avqa",
              paper="— (no AVQA figure for CLIP)"),
    PresetRow("lavish", SWINV2_L, "AVQA preset (m=64, D/8, 4 groups), AVST at 512-d", {"preset": "avqa",
              "width": 512}, task="avqa",
              paper="21.1M / 249.8M (poster; also counts 2.76M unused Linears and Swin-V2-L's 21k-class head)"),
    # DG-SCT: Swin-V2-L for video beside HTS-AT for audio (the method's ``paper_audio_backbone``). The
    # reference's printed "trainable" figures are percentages of its totals; its totals also count modules that
    # never affect its loss (docs/methods.md, "DG-SCT": the reconciliation). AVE carries the CMBS head with the temporal module.
    PresetRow("dg_sct", SWINV2_L, "AVE preset (conv, m=32, α 0.3, β 0.05), HTS-AT, CMBS head", {"preset": "ave"},
              task="ave", paper="201.16M / 461.26M built (printed '43.6' = 43.6%); 196.42M of it trained"),
    PresetRow("dg_sct", SWINV2_L, "S4 preset (resize, m=32, no BN, AVS layout), HTS-AT, AVSBench decoder",
              {"preset": "s4"}, task="avs",
              paper="366.0M / 594.8M built (printed '61.5' = 61.5%); 164.9M trained, HTS-AT included"),
    PresetRow("dg_sct", SWINV2_L, "MS3 preset (conv, m=32, D/2, α 0.2, β 0.1, AVS layout), HTS-AT, AVSBench decoder",
              {"preset": "ms3"}, task="avs",
              paper="342.8M / 602.9M built (printed '56.86' = 56.9%); 225.6M trained"),
    PresetRow("dg_sct", SWINV2_L, "AVQA preset (conv, m=2, 4 groups, no BN, ungated audio), HTS-AT, AVST at 1536-d",
              {"preset": "avqa"}, task="avqa",
              paper="256.8M / 516.8M built (printed '50.0' ≈ 49.7%); 253.21M trained"),
    # AVVP: T = 10; STG-CMA with the AVVP baseline's HAN head, DG-SCT with its MGN head and the R(2+1)D-18 features
    # it concatenates to the visual stream (avadapt.tasks.avvp). No reference trains STG-CMA on AVVP, and DG-SCT
    # prints no AVVP count.
    PresetRow("stg_cma", CLIP_B16, "AVVP, base (1/16), HAN head (512)", {"preset": "base"}, task="avvp",
              paper="— (no reference trains this row)"),
    PresetRow("stg_cma", CLIP_L14, "AVVP, base (1/16), HAN head (512)", {"preset": "base"}, task="avvp",
              paper="— (no reference trains this row)"),
    PresetRow("dg_sct", SWINV2_L, "AVVP preset (conv, m=32, α 0.3, β 0.05), HTS-AT, MGN head (128) + R(2+1)D",
              {"preset": "avvp", "extra_video_dim": 512}, task="avvp", paper="— (no AVVP count printed)"),
    PresetRow("av_stfp", CLIP_B16, "4 spatial + 1 fusion + T time codes", task="ave", paper="~1.1M (poster)"),
    PresetRow("av_stfp", CLIP_L14, "4 spatial + 1 fusion + T time codes", task="ave", paper="~1.8M (poster)"),
    # Action recognition on Kinetics-Sounds' 31 classes, the recognition head (avadapt.tasks.avar.task). Figures: the
    # AV-STFP poster's recognition table; the other methods publish no recognition code or figure.
    *(PresetRow("av_stfp", backbone, "KS 31 classes, 4 spatial + 1 fusion + T time codes", task="avar",
                paper=f"{paper} (poster)") for backbone, paper in ((CLIP_B16, "1.10M"), (CLIP_L14, "1.82M"))),
    *(PresetRow("stg_cma", backbone, "KS 31 classes, base (1/16)", {"preset": "base"}, task="avar",
                paper="— (no recognition code)") for backbone in (CLIP_B16, CLIP_L14)),
    PresetRow("lavish", SWINV2_L, "KS 31 classes, AVE preset (the default)", task="avar",
              paper="— (no recognition code)"),
    *(PresetRow("probe", backbone, "KS 31 classes, frozen backbone", task="avar") for backbone in (CLIP_B16, CLIP_L14)),
)


def measure(row: PresetRow) -> dict[str, Any]:
    """Build ``row`` without weights and count: trainable / total integers plus the row's labels."""
    report = parameter_report(build_as_published(row.backbone, row.method, row.task, **row.options))
    return {"method": row.method, "backbone": BACKBONE_LABELS.get(row.backbone, row.backbone),
            "timm_name": row.backbone, "task": row.task, "setting": row.setting, "options": dict(row.options),
            "trainable": report["trainable"], "total": report["total"], "paper": row.paper}


def parameter_table(rows: Iterable[PresetRow] = PRESET_ROWS) -> list[dict[str, Any]]:
    """Measured counts of ``rows`` (default: every preset row), skipping rows whose method or task is not registered."""
    return [measure(row) for row in rows if row.method in METHODS and row.task in TASKS]


COLUMNS = ("method", "backbone", "task", "setting", "trainable", "total", "paper")


def _cells(entry: dict[str, Any]) -> list[str]:
    return [entry["method"], entry["backbone"], entry["task"], entry["setting"],
            f"{entry['trainable'] / 1e6:.2f}M", f"{entry['total'] / 1e6:.2f}M", entry["paper"]]


def format_table(entries: list[dict[str, Any]], markdown: bool = False) -> str:
    """Plain aligned text, or a Markdown table (counts in millions, two decimals)."""
    rows = [_cells(entry) for entry in entries]
    if markdown:
        lines = ["| " + " | ".join(COLUMNS) + " |",
                 "|" + "|".join("---:" if c in ("trainable", "total") else "---" for c in COLUMNS) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(COLUMNS)]
    numeric = {COLUMNS.index("trainable"), COLUMNS.index("total")}

    def line(cells: list[str]) -> str:
        return "  ".join(cell.rjust(w) if i in numeric else cell.ljust(w)
                         for i, (cell, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(list(COLUMNS)), line(["-" * w for w in widths]), *(line(r) for r in rows)])

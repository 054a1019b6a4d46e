"""Dependencies point one way (DESIGN.md, "Packages"; STYLE.md, point 3).

Every ``import`` of every module under ``src/avadapt``, at module level or inside a function, is read with
``ast`` (nothing is imported), mapped to the layer it belongs to and checked against ``ALLOWED``:

    kernels → layers → backbones / tasks → methods → models → training / prediction → cli
    (base: _registry, _config, _files, checkpoint_files, types, errors, importable from every layer but
    kernels; data beside the model stack, read by tasks for their ground truth; kernels, the fast paths' one
    interface, importable from every layer of the model stack up)

A new module or package under ``src/avadapt`` fails ``test_every_module_belongs_to_a_layer`` until it has a
row in ``LAYER_OF``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Module (or package) → layer; a module belongs to the longest entry it is, or lies under. The package
# itself ("avadapt") is its front door: it re-exports create_model, so it counts as the models layer.
LAYER_OF = {
    "avadapt._registry": "base",
    "avadapt._config": "base",
    "avadapt._files": "base",
    "avadapt.checkpoint_files": "base",
    "avadapt.types": "base",
    "avadapt.errors": "base",
    "avadapt.audio_front_ends": "base",  # named audio settings that the data pipeline and the models both read
    "avadapt.kernels": "kernels",
    "avadapt.layers": "layers",
    "avadapt.backbones": "backbones",
    "avadapt.tasks": "tasks",
    "avadapt.methods": "methods",
    "avadapt": "models",
    "avadapt.models": "models",
    "avadapt.adapter_files": "models",
    "avadapt.param_table": "models",
    "avadapt.text": "models",  # classification from class names: CLIP / CLAP towers, DG-SCT between them, scores
    "avadapt.text.training": "training",
    "avadapt.text.run": "training",
    "avadapt.text.demo": "cli",
    "avadapt.text.cli": "cli",
    "avadapt.data": "data",
    "avadapt.training": "training",
    "avadapt.prediction": "prediction",
    "avadapt.demo": "cli",
    "avadapt.cli": "cli",
}

# Layer → the other layers its modules may import (its own is always allowed).
ALLOWED = {
    "base": set(),  # torch only
    "kernels": set(),  # torch only: not even base
    "layers": {"base", "kernels"},
    "backbones": {"base", "kernels", "layers"},
    "tasks": {"base", "kernels", "layers", "data"},  # task heads never import backbones or methods
    "methods": {"base", "kernels", "layers", "backbones"},
    "models": {"base", "kernels", "layers", "backbones", "tasks", "methods"},  # models.py, io.py, param_table.py
    "data": {"base"},  # decoding and datasets know nothing of the model stack
    "training": {"base", "kernels", "backbones", "tasks", "models", "data"},
    "prediction": {"base", "kernels", "backbones", "tasks", "models", "data"},  # a whole video, without Lightning
    "cli": {"base", "kernels", "tasks", "models", "data", "training", "prediction"},
}

# Edges that break ALLOWED today; each needs a change in src/ to go away (then delete it here; a test below
# fails once an exception is no longer used). (importing module, imported layer):
KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()

MODEL_CODE = {"base", "kernels", "layers", "backbones", "tasks", "methods", "models"}
LIGHTNING = ("lightning", "pytorch_lightning", "lightning_fabric")
LIGHTNING_DATA_MODULE = "avadapt.data.datamodule"  # the one data module that is a Lightning DataModule
# Third-party imports allowed where DESIGN names them (the standard library is always allowed).
THIRD_PARTY_ONLY = {"kernels": ("torch",), "layers": ("torch", "timm.layers")}


def within(module: str, name: str) -> bool:
    """``module`` is ``name`` or lies under it."""
    return module == name or module.startswith(name + ".")


def layer_of(module: str) -> str | None:
    """The layer of the longest ``LAYER_OF`` entry ``module`` is or lies under ("avadapt": only itself)."""
    matches = [name for name in LAYER_OF if within(module, name) and (name != "avadapt" or module == name)]
    return LAYER_OF[max(matches, key=len)] if matches else None


def source_modules(src: Path = SRC) -> dict[str, Path]:
    """Dotted name → file of every module under ``src/avadapt`` (a package's file is its ``__init__.py``)."""
    modules = {}
    for path in sorted((src / "avadapt").rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imports_in(source: str, module: str, is_package: bool, known: set[str]) -> list[tuple[str, int]]:
    """(imported module, line) of every import statement in ``source``, however deeply nested.

    ``from X import a`` counts as importing ``X.a`` where that is a module of ``known``, else ``X``; relative
    imports are resolved against ``module`` (a package's own name is its base).
    """
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.append((submodule if submodule in known else base, node.lineno))
    return found


def all_imports(src: Path = SRC) -> list[tuple[str, str, int]]:
    """(importing module, imported module, line) over the whole package."""
    modules = source_modules(src)
    edges = []
    for module, path in modules.items():
        for target, line in imports_in(path.read_text(), module, path.name == "__init__.py", set(modules)):
            edges.append((module, target, line))
    return edges


def direction_violations(edges) -> list[str]:
    problems = []
    for module, target, line in edges:
        if not within(target, "avadapt"):
            continue
        source_layer, target_layer = layer_of(module), layer_of(target)
        if target_layer is None or source_layer == target_layer or (module, target_layer) in KNOWN_EXCEPTIONS:
            continue
        if target_layer not in ALLOWED[source_layer]:
            problems.append(f"{module}:{line} ({source_layer}) imports {target} ({target_layer})")
    return problems


def third_party_violations(edges) -> list[str]:
    problems = []
    for module, target, line in edges:
        layer, top = layer_of(module), target.partition(".")[0]
        if top == "avadapt" or top in sys.stdlib_module_names or top == "__future__":
            continue
        lightning_free = layer in MODEL_CODE | {"prediction"} or (layer == "data" and module != LIGHTNING_DATA_MODULE)
        if top in LIGHTNING and lightning_free:
            problems.append(f"{module}:{line} ({layer}) imports {target}: Lightning stays out of it")
        allowed = THIRD_PARTY_ONLY.get(layer)
        if allowed is not None and not any(within(target, name) for name in allowed):
            problems.append(f"{module}:{line} ({layer}) imports {target}; {layer} may import only {allowed}")
    return problems


# ---- the package ------------------------------------------------------------------------------------------
def test_every_module_belongs_to_a_layer():
    modules = source_modules()
    assert {"avadapt.models", "avadapt.layers", "avadapt.training.module", LIGHTNING_DATA_MODULE} <= modules.keys()
    assert [m for m in modules if layer_of(m) is None] == [], "add the new package to LAYER_OF"
    assert set(ALLOWED) == set(LAYER_OF.values())


def test_imports_point_one_way():
    assert direction_violations(all_imports()) == []


def test_model_code_stays_free_of_lightning_and_kernels_of_third_party_code():
    assert third_party_violations(all_imports()) == []


def test_known_exceptions_are_still_needed():
    """An exception whose edge is gone must be deleted, so that the rule holds again."""
    seen = {(module, layer_of(target)) for module, target, _ in all_imports()}
    assert KNOWN_EXCEPTIONS <= seen


# ---- the checker itself, on sources written here -----------------------------------------------------------
def _write(src: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return src


def test_checker_sees_imports_inside_functions_and_relative_ones(tmp_path):
    src = _write(tmp_path, {
        "avadapt/__init__.py": "",
        "avadapt/methods/__init__.py": "from . import fast\n",
        "avadapt/methods/fast.py": "def train():\n    from ..training import module\n    return module\n",
        "avadapt/tasks/__init__.py": "",
        "avadapt/tasks/head.py": "import torch\n\n\nclass Head:\n    def build(self):\n"
                                 "        from avadapt.backbones import vit  # noqa\n",
        "avadapt/training/__init__.py": "",
        "avadapt/training/module.py": "",
    })
    edges = all_imports(src)
    assert ("avadapt.methods", "avadapt.methods.fast", 1) in edges  # `from . import x` names the submodule
    assert direction_violations(edges) == [
        "avadapt.methods.fast:2 (methods) imports avadapt.training.module (training)",
        "avadapt.tasks.head:6 (tasks) imports avadapt.backbones (backbones)",
    ]


@pytest.mark.parametrize(("module", "source", "problem"), [
    ("avadapt/methods/probe.py", "import lightning as L\n", "imports lightning: Lightning stays out"),
    ("avadapt/models.py", "def fit():\n    from pytorch_lightning import Trainer\n", "pytorch_lightning"),
    ("avadapt/data/ave.py", "import lightning\n", "imports lightning: Lightning stays out"),
    ("avadapt/prediction.py", "import lightning\n", "imports lightning: Lightning stays out"),
    ("avadapt/kernels/heap.py", "import numpy\n", "kernels may import only ('torch',)"),
    ("avadapt/kernels/heap.py", "from avadapt.types import AVBatch\n", "(kernels) imports avadapt.types"),
    ("avadapt/layers/norm.py", "from timm.models import vision_transformer\n", "layers may import only"),
])
def test_checker_names_each_kind_of_violation(tmp_path, module, source, problem):
    src = _write(tmp_path, {"avadapt/__init__.py": "", module: source})
    problems = direction_violations(all_imports(src)) + third_party_violations(all_imports(src))
    assert len(problems) == 1 and problem in problems[0]


def test_checker_allows_what_the_design_allows(tmp_path):
    src = _write(tmp_path, {
        "avadapt/__init__.py": "",
        "avadapt/data/datamodule.py": "import lightning as L\nfrom avadapt.types import AVBatch\n",
        "avadapt/layers/linear.py": "import math\nimport torch\nfrom timm.layers import DropPath\n"
                                    "from avadapt.kernels import fused_linear\n",
        "avadapt/backbones/vit.py": "import timm\nfrom avadapt.kernels import attention\n"
                                    "from avadapt.layers import frozen_linear\n",
        "avadapt/kernels/attention.py": "import ctypes\nimport torch\n",
        "avadapt/training/module.py": "import lightning\nfrom avadapt.models import create_model\n",
    })
    edges = all_imports(src)
    assert direction_violations(edges) == [] and third_party_violations(edges) == []

"""Generic modules never name a task: no string constant outside the places listed here equals the name of a
registered task or dataset. Every module under ``src/avadapt`` is read with ``ast`` (nothing is imported), so
a task's name in a default, a fallback or a lookup table of the generic machinery fails here with its
file:line.
"""

from __future__ import annotations

import ast
from fnmatch import fnmatch
from pathlib import Path

from avadapt._registry import DATASETS, TASKS

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "avadapt"

# Places that may name tasks, relative to the package, with the reason (a folder covers what lies under it).
ALLOWED = {
    "tasks": "the task packages themselves, and the built-in tasks' package naming its default task",
    "methods/*/config.py": "a method's own per-task presets, named after the tasks the paper tuned them on",
    "param_table.py": "the paper's parameter table: each row is a published (method, backbone, task) figure",
}



def _excluded(relative: Path) -> bool:
    path = relative.as_posix()
    return any(fnmatch(path, pattern) or path.startswith(f"{pattern}/")
               for pattern in ALLOWED)


def task_name_literals(names: set[str]) -> list[str]:
    """``file:line: 'name'`` for every string constant equal to one of ``names`` in a generic module."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if _excluded(relative):
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                found.append(f"src/avadapt/{relative}:{node.lineno}: {node.value!r}")
    return sorted(found)


def test_no_generic_module_names_a_task_or_dataset():
    names = set(TASKS.names()) | set(DATASETS.names())
    assert {"ave", "avs", "avqa"} <= names  # the registries were loaded, so the check checks something
    found = task_name_literals(names)
    assert not found, "task or dataset names in generic modules:\n" + "\n".join(found)


def test_the_scan_finds_a_task_name_where_one_is_written(tmp_path, monkeypatch):
    module = tmp_path / "training" / "module.py"
    module.parent.mkdir()
    module.write_text('"""Docs."""\n\n\ndef f(task: str = "avs"):\n    return {"key": task}\n')
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "own.py").write_text('NAME = "avs"\n')  # a task package may name itself
    monkeypatch.setitem(globals(), "PACKAGE", tmp_path)
    assert task_name_literals({"avs"}) == ["src/avadapt/training/module.py:4: 'avs'"]

"""Class names as text: the class-name file, the words a label becomes in a prompt, and the prompt templates.

Classification from text scores each clip against one prompt per class, so the class list (its order is the
label order) and the way a label turns into words are part of what a model was trained with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from avadapt._config import JSONConfig
from avadapt._registry import DATASETS
from avadapt.errors import AnnotationError, OptionError


def read_class_file(path: str | Path) -> list[str]:
    """The class names of a UTF-8 file, one a line in label order (spaces around a name dropped, trailing blank
    lines allowed). A blank line before the last name would shift every later label by one, and a name listed
    twice would make two labels one prompt: each is an :class:`AnnotationError` naming the file and the lines."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(path, None, "class-name file not found")
    lines = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise AnnotationError(path, None, "no class names")
    first_line: dict[str, int] = {}
    for number, name in enumerate(lines, start=1):
        if not name:
            raise AnnotationError(path, number, "empty class name before the last one (labels are line numbers, so "
                                                "a blank line would shift every later class)")
        if name in first_line:
            raise AnnotationError(path, number, f"class {name!r} is listed twice (first on line {first_line[name]})")
        first_line[name] = number
    return lines


def readable_name(name: str) -> str:
    """A dataset label as words for a prompt: underscores become spaces, case is kept ("Frying_(food)" →
    "Frying (food)"). This is what DG-SCT's CLIP prompt learner does to a class name (haoyi-duan/DG-SCT,
    few-shot/nets/prompt_learner.py, ``PromptLearner``); proper nouns keep their capitals and the text towers
    see the label as the reference trained them on it."""
    return name.replace("_", " ")


@dataclass(frozen=True)
class PromptTemplates(JSONConfig):
    """The texts each class is scored against, ``{}`` standing for the class name (haoyi-duan/DG-SCT,
    few-shot/nets/prompt_learner.py: ``PromptLearner`` and ``CLAPTextEncoder``).

    CLIP reads ``"{ctx} {name}."`` where ``{ctx}`` are learnt context vectors as many as the words before ``{}``
    (:attr:`clip_context`), the name made :func:`readable_name`. The reference computes those words' embeddings
    and then overwrites them with N(0, 0.02) draws, so its context starts random and only its length comes from
    the words. CLAP reads ``"The sounds of {name}"`` with the raw label, underscores kept, as the reference passes
    it. ``background`` is the name of the extra class a segment-level model scores when background seconds have
    their own prompt (the reference appends it when not ``weak``)."""

    clip: str = "a photo of a {}."  # the context words, then the name and a full stop
    clap: str = "The sounds of {}"
    background: str = "background"

    def __post_init__(self):
        for field, template in (("clip", self.clip), ("clap", self.clap)):
            if template.count("{}") != 1:
                raise OptionError(f"prompt template {field}={template!r} must hold one '{{}}' for the class name")
        if not self.background.strip():
            raise OptionError("the background prompt's class name is empty")

    @property
    def clip_context(self) -> str:
        """The words before the class name in the CLIP template: one learnt context vector each."""
        return self.clip.split("{}")[0].strip()

    def clip_prompts(self, class_names: list[str], background: bool = False) -> list[str]:
        """CLIP's prompt per class (and the background class last, with ``background``), names made readable."""
        names = [readable_name(name) for name in class_names] + ([self.background] if background else [])
        return [self.clip.format(name) for name in names]

    def clap_prompts(self, class_names: list[str], background: bool = False) -> list[str]:
        """CLAP's prompt per class (and the background class last, with ``background``), names as given."""
        return [self.clap.format(name) for name in [*class_names, *([self.background] if background else [])]]


def dataset_classes(dataset: str, root: str | Path, **options) -> tuple[list[str], str | None]:
    """The event class names of a registered dataset (AVE's 28, LLP's 25, the recognition lists' classes), in
    label order, and the name its list ends with when that is ``background`` (AVE's; None for the others): whether
    background seconds are scored, and by which prompt, is the evaluation's choice
    (:class:`PromptTemplates.background`)."""
    names = DATASETS.get(dataset).class_names(root, **options)
    if names is None:
        raise OptionError(f"dataset {dataset!r} has no classes to name in a prompt")
    if names and names[-1] == "background":
        return names[:-1], names[-1]
    return list(names), None


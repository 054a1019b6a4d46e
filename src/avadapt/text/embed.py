"""A picture of clip features: t-SNE maps side by side (e.g. frozen encoders against adapted), one colour a class.

Whether adaptation pulls a class's clips together shows better in a picture than in one accuracy figure; each
panel gets its own t-SNE (the feature spaces differ), with the same colour for a class in every panel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MAX_LEGEND_CLASSES = 20  # more names than this cover the picture; the colours alone still show the grouping
PANEL_INCHES = 5.0
LEGEND_INCHES = 2.5  # a column right of the panels for the class names


def tsne_map(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, E) features → (N, 2) t-SNE coordinates; the perplexity is 30, or (N − 1) / 3 for small N, since
    scikit-learn needs it below N and a neighbourhood of a third of the points still keeps them apart."""
    from sklearn.manifold import TSNE

    perplexity = min(30.0, max(1.0, (len(features) - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        np.asarray(features, dtype=np.float32))


def embedding_picture(panels: dict[str, tuple[np.ndarray, np.ndarray]], class_names: list[str], path: str | Path,
                      seed: int = 0) -> Path:
    """Write a PNG of one t-SNE panel per entry of ``panels`` (title → (features (N, E), labels (N,) class
    indices)), coloured by class, with a legend naming the classes shown when there are at most 20."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not panels:
        raise ValueError("no panels to draw")
    path = Path(path)
    colours = colormaps["tab20" if len(class_names) <= 20 else "gist_ncar"].resampled(max(len(class_names), 1))
    legend = len(set(np.concatenate([np.asarray(labels) for _, labels in panels.values()]).tolist())) \
        <= MAX_LEGEND_CLASSES
    width = PANEL_INCHES * len(panels) + (LEGEND_INCHES if legend else 0.0)
    figure = Figure(figsize=(width, PANEL_INCHES))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(panels), squeeze=False)
    shown: set[int] = set()
    for ax, (title, (features, labels)) in zip(axes[0], panels.items()):
        labels = np.asarray(labels, dtype=int)
        if len(features) != len(labels) or len(labels) < 3:
            raise ValueError(f"panel {title!r}: needs as many labels as features and at least 3 clips, got "
                             f"{len(features)} features and {len(labels)} labels")
        points = tsne_map(features, seed)
        for k in np.unique(labels):
            at = labels == k
            ax.scatter(points[at, 0], points[at, 1], s=12, color=colours(k), label=class_names[k])
            shown.add(int(k))
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    if legend:  # in a column of its own right of the panels
        handles = {h.get_label(): h for ax in axes[0] for h in ax.get_legend_handles_labels()[0]}
        ordered = [handles[class_names[k]] for k in sorted(shown)]
        figure.subplots_adjust(right=PANEL_INCHES * len(panels) / width)
        figure.legend(ordered, [class_names[k] for k in sorted(shown)], loc="center left", fontsize="small",
                      bbox_to_anchor=(PANEL_INCHES * len(panels) / width, 0.5), frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    return path

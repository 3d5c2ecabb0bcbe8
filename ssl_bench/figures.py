"""Figures of ``ssl-bench report``, drawn with matplotlib's Agg backend into PNG bytes.

Every function takes plain arrays / dicts (what :mod:`ssl_bench.report` reads from a runs
directory) and returns the PNG as ``bytes``; nothing here reads files or touches a model.
"""

from __future__ import annotations

import io
import math
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

REF_STYLE = {"pixels": dict(color="black", ls="--", lw=1.8), "random-init": dict(color="0.45", ls=":", lw=1.8)}


def _plt() -> ModuleType:  # matplotlib.pyplot, imported on first use
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Figure) -> bytes:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _grid(n: int, cols: int = 5, size: float = 2.6) -> tuple[Figure, list[Axes]]:
    plt = _plt()
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def learning_curves(curves: dict[str, dict[str, list]]) -> bytes:
    """One panel per run: training loss (left axis) and, where the run logged it, the online k-NN
    monitor (right axis, %). ``curves[label] = {"epoch", "loss", "knn_epoch", "knn"}`` (per epoch),
    with ``"step_epoch", "step_loss"`` (fractional epoch and loss every ``log_every`` steps) where
    the run has ``train_steps.csv``: then the steps are the line and the epoch means are dots at
    mid-epoch (the mean is over the whole epoch)."""
    fig, axes = _grid(len(curves))
    for ax, (label, c) in zip(axes, curves.items(), strict=True):
        if c.get("step_loss"):
            ax.plot(c["step_epoch"], c["step_loss"], "-", color="tab:blue", lw=1, alpha=0.85)
            ax.plot([e - 0.5 for e in c["epoch"]], c["loss"], "o", color="tab:blue", ms=4, mec="white", mew=0.6)
        else:
            ax.plot(c["epoch"], c["loss"], "o-", color="tab:blue", ms=3)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel("loss", fontsize=8, color="tab:blue")
        ax.tick_params(labelsize=7)
        if c.get("knn"):
            ax2 = ax.twinx()
            ax2.plot(c["knn_epoch"], c["knn"], "s--", color="tab:orange", ms=3, alpha=0.8)
            ax2.set_ylabel("k-NN monitor %", fontsize=8, color="tab:orange")
            ax2.tick_params(labelsize=7)
    fig.tight_layout()
    return _png(fig)


def monitor_overlay(curves: dict[str, dict[str, list]]) -> bytes:
    """Online k-NN monitor of every run on one axis (accuracy is comparable across methods): against
    the epoch (left) and against training wall-clock seconds (right, where ``knn_seconds`` is given:
    one value per check, aligned with ``knn``), one colour per run in both panels."""
    plt = _plt()
    timed = any(c.get("knn_seconds") for c in curves.values())
    fig, axes = plt.subplots(1, 2 if timed else 1, figsize=(13, 4.4) if timed else (7.5, 4.2), squeeze=False)
    ax, ax_t = axes[0][0], axes[0][-1]
    for i, (label, c) in enumerate(curves.items()):
        colour = f"C{i % 10}"
        ax.plot(c["knn_epoch"], c["knn"], "o-", ms=3, label=label, color=colour)
        if timed and c.get("knn_seconds"):
            ax_t.plot(c["knn_seconds"], c["knn"], "o-", ms=3, color=colour)
    ax.set_xlabel("epoch")
    ax.set_ylabel("k-NN top-1 on the monitor subset (%)")
    ax.grid(alpha=0.3)
    if timed:
        ax_t.set_xlabel("training wall-clock seconds")
        ax_t.set_ylabel("k-NN top-1 on the monitor subset (%)")
        ax_t.set_xlim(left=0)
        ax_t.grid(alpha=0.3)
    ax_t.legend(*ax.get_legend_handles_labels(), fontsize=7, ncol=2, bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.tight_layout()
    return _png(fig)


def eigen_spectra(spectra: dict[str, np.ndarray]) -> bytes:
    """Covariance eigenvalues (squared singular values), normalised to sum 1, log scale, against
    the rank normalised to [0, 1] so that embeddings of different widths share an axis.
    ``pixels`` and ``random-init*`` labels are drawn as dashed/dotted references."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.6))
    for label, s in spectra.items():
        ev = np.asarray(s, dtype=np.float64) ** 2
        if ev.sum() <= 0:
            continue
        ev = ev / ev.sum()
        ev = np.where(ev > 0, ev, np.nan)
        x = np.arange(1, len(ev) + 1) / len(ev)
        ref = next((v for k, v in REF_STYLE.items() if label.startswith(k)), None)
        ax.plot(x, ev, label=label, **(ref or dict(lw=1.2)))
    ax.set_yscale("log")
    ax.set_xlabel("eigenvalue rank / embedding dimension")
    ax.set_ylabel("normalised eigenvalue λ_k / Σλ")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2, bbox_to_anchor=(1.02, 1), loc="upper left")
    return _png(fig)


def rank_axis_scale(ranks: list[float]) -> str:
    """``"log"`` when the ranks span more than a factor of 8 (pixels' rank is often 10x a
    method's: on a linear axis the methods would share one squashed column), else ``"linear"``."""
    pos = [r for r in ranks if r > 0]
    return "log" if len(pos) == len(ranks) and pos and max(pos) > 8 * min(pos) else "linear"


def rankme_vs_knn(points: dict[str, tuple[float, float]]) -> bytes:
    """One point per method: RankMe (x, log scale when the ranks are far apart, see
    :func:`rank_axis_scale`) against k-NN top-1 (y); references in grey."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.6))
    scale = rank_axis_scale([rank for rank, _ in points.values()])
    for label, (rank, acc) in points.items():
        ref = label.startswith(tuple(REF_STYLE))
        ax.scatter([rank], [acc], c="0.5" if ref else "tab:blue", marker="s" if ref else "o", s=28)
        ax.annotate(label, (rank, acc), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale(scale)
    if scale == "log":  # plain numbers on the ticks (2, 5, 10, 20, ...), not powers of ten
        from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("RankMe (effective rank of the embeddings)" + (", log scale" if scale == "log" else ""))
    ax.set_ylabel("k-NN top-1 (%)")
    ax.grid(alpha=0.3, which="both" if scale == "log" else "major")
    return _png(fig)


def pca_scatters(panels: dict[str, tuple[np.ndarray, np.ndarray | None]]) -> bytes:
    """2-D PCA of test embeddings coloured by class (one colour without labels), one panel per run.
    ``panels[label] = (xy, y)``."""
    fig, axes = _grid(len(panels))
    for ax, (label, (xy, y)) in zip(axes, panels.items(), strict=True):
        ax.scatter(xy[:, 0], xy[:, 1], c=y, cmap="tab10", s=3, alpha=0.7, linewidths=0)
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return _png(fig)


def prf_heatmaps(per_run: dict[str, dict]) -> bytes:
    """Per-class k-NN precision, recall and F1 (%), three heat maps side by side, runs x classes.
    ``per_run[label] = {"classes": [...], "precision": array, "recall": array, "f1": array}``
    (percent, aligned with ``classes``); a class a run has no value for stays blank."""
    plt = _plt()
    labels = list(per_run)
    classes = sorted({int(c) for v in per_run.values() for c in v["classes"]})
    col = {c: j for j, c in enumerate(classes)}
    fig, axes = plt.subplots(
        1, 3, figsize=(3 * (1.2 + 0.42 * len(classes)) + 1.5, 1.2 + 0.3 * len(labels)), sharey=True
    )
    panels = (("precision", "precision (%)"), ("recall", "recall (%)"), ("f1", "F1 (%)"))
    for ax, (key, title) in zip(axes, panels, strict=True):
        m = np.full((len(labels), len(classes)), np.nan)
        for i, lab in enumerate(labels):
            for c, v in zip(per_run[lab]["classes"], per_run[lab][key], strict=True):
                m[i, col[int(c)]] = v
        im = ax.imshow(m, cmap="viridis", vmin=0, vmax=100, aspect="auto")
        ax.set_title(f"k-NN {title} per class", fontsize=9)
        ax.set_xticks(range(len(classes)), [str(c) for c in classes], fontsize=7)
        ax.set_xlabel("class", fontsize=8)
        if len(classes) <= 20:
            for i in range(m.shape[0]):
                for j in range(m.shape[1]):
                    if np.isfinite(m[i, j]):
                        ax.text(
                            j,
                            i,
                            f"{m[i, j]:.0f}",
                            ha="center",
                            va="center",
                            fontsize=6,
                            color="white" if m[i, j] < 60 else "black",
                        )
    axes[0].set_yticks(range(len(labels)), labels, fontsize=7)
    fig.colorbar(im, ax=list(axes), shrink=0.8, label="%")
    return _png(fig)


def energy_landscapes(panels: dict[str, dict]) -> bytes:
    """E(x) = -cos(f(x), f(anchor)) over a grid of the plane, one panel per run; the data points
    (grey) and the anchor (red star) marked. ``panels[label] = {"xs", "ys", "energy", "data", "anchor"}``."""
    fig, axes = _grid(len(panels), cols=4, size=3.0)
    for ax, (label, p) in zip(axes, panels.items(), strict=True):
        cs = ax.contourf(p["xs"], p["ys"], p["energy"], levels=np.linspace(-1, 1, 21), cmap="coolwarm")
        ax.scatter(p["data"][:, 0], p["data"][:, 1], s=2, c="0.15", alpha=0.35, linewidths=0)
        ax.scatter([p["anchor"][0]], [p["anchor"][1]], marker="*", s=160, c="red", edgecolors="white")
        ax.set_title(label, fontsize=9)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(cs, ax=axes, shrink=0.6, label="E(x) = −cos(f(x), f(anchor))")
    return _png(fig)


def dsm_field(
    xs: np.ndarray, ys: np.ndarray, score: np.ndarray, samples: np.ndarray, data: np.ndarray, sigma: float, title: str
) -> bytes:
    """Left: the learned score s(x, σ) as a vector field over the data; right: Langevin samples
    next to the true mixture. ``score`` is (len(ys), len(xs), 2)."""
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.8))
    gx, gy = np.meshgrid(xs, ys)
    mag = np.linalg.norm(score, axis=-1)
    a.scatter(data[:, 0], data[:, 1], s=2, c="0.6", alpha=0.5, linewidths=0)
    a.quiver(
        gx,
        gy,
        score[..., 0] / (mag + 1e-9),
        score[..., 1] / (mag + 1e-9),
        np.log1p(mag),
        cmap="viridis",
        scale=35,
        width=0.004,
    )
    a.set_title(f"{title}: score field s(x, σ={sigma:g}) (direction; colour = log(1+|s|))", fontsize=9)
    a.set_aspect("equal")
    b.scatter(data[:, 0], data[:, 1], s=3, c="0.6", alpha=0.5, linewidths=0, label="true mixture (test points)")
    b.scatter(samples[:, 0], samples[:, 1], s=3, c="tab:red", alpha=0.7, linewidths=0, label="Langevin samples")
    b.set_title(f"{title}: annealed Langevin samples vs data", fontsize=9)
    b.set_aspect("equal")
    b.legend(fontsize=7, loc="lower right", markerscale=3)
    for ax in (a, b):
        ax.set_xlim(xs[0], xs[-1])
        ax.set_ylim(ys[0], ys[-1])
    return _png(fig)

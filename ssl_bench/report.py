"""``ssl-bench report``: one self-contained HTML page from a runs directory.

The page holds, per dataset, the leaderboard table (rendered from
:func:`ssl_bench.leaderboard.to_markdown`, so it follows whatever the leaderboard shows), then
one section per figure. Images are PNGs drawn by matplotlib (Agg, :mod:`ssl_bench.figures`) and
embedded as base64 ``data:`` URIs: no network, no CDN, no script; the file reads offline.

Every figure comes from what runs already store:

=====================  ==================================================================
learning curves        ``train_steps.csv`` (loss every ``log_every`` steps), ``train_log.csv``
                       (loss per epoch; ``knn_monitor``, the online k-NN, and its seconds)
k-NN monitor           ``monitor.csv`` (a row per check: seconds, step, epoch, knn) where the run
                       has one, else ``train_log.csv``; against epochs and training seconds
eigen-spectra          ``artifacts/*collapse-spectrum.npy`` (collapse evaluator), references too
RankMe vs k-NN         the result rows (``rankme.rank``, ``knn.top1``), mean over seeds
PCA scatters           ``embeddings/<last checkpoint>-*.npz`` (the cached test embeddings)
k-NN P/R/F1            the ``knn`` rows' per-class metrics; runs without them: recomputed from the
                       cached embeddings with the evaluator's defaults (k = 20, T = 0.07)
reconstruction grids   ``artifacts/*reconstruction.png`` (reconstruction evaluator)
energy landscapes      ``mog2d`` runs: the last checkpoint's encoder on a grid of the plane
DSM field + Langevin   ``mog2d`` ``dsm`` runs: score head from ``checkpoints/resume.pt``
=====================  ==================================================================

Per-run figures use one run per (method, backbone): the lowest seed. The page opens with a table
of contents. A section that does not apply to the dataset (energy landscapes and the DSM field
off mog2d, reconstruction grids on vector data) is left out; one that applies but has no data
(the monitor of a smoke run) is left out too and named, with the reason, in a note under the
dataset's sections.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TYPE_CHECKING, cast

import numpy as np

from . import figures
from .checkpoint import artifact_dir, atomic_write_text, latest_epoch_checkpoint
from .stats import small_work_threads
from .steplog import FILENAME as STEPS_FILE
from .steplog import read_steps

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from .data import Data
    from .embeddings import Embeddings

#: Figure sections in page order: (anchor id, title, one-line caption).
SECTIONS = [
    (
        "curves",
        "Learning curves",
        "Training loss every log_every steps (blue line; dots: each epoch's mean loss, at mid-epoch; left axis) "
        "and the online k-NN monitor (orange, dashed, right axis: k-NN top-1 on a fixed 1000/500 labelled subset, "
        "config knn_monitor_every).",
    ),
    (
        "monitor",
        "Online k-NN monitor",
        "k-NN top-1 on the monitor subset, every run on one axis: per epoch (left) and against the training "
        "wall-clock seconds at each check (right; the monitor's own time is not counted).",
    ),
    (
        "spectra",
        "Eigen-spectra",
        "Eigenvalues of the embedding covariance (train split, collapse evaluator), "
        "normalised to sum 1, log scale; pixels (dashed) and random-init (dotted) as references. A spectrum that "
        "falls off a cliff is dimensional collapse.",
    ),
    (
        "rankme",
        "RankMe vs k-NN",
        "Effective rank of the embeddings against k-NN top-1, one point per "
        "(method, backbone), mean over seeds; references as grey squares.",
    ),
    (
        "pca",
        "Embeddings (PCA)",
        "Test embeddings projected on their first two principal components, "
        "coloured by class (up to 2000 points per panel).",
    ),
    (
        "knn-prf",
        "k-NN precision, recall, F1",
        "Precision, recall and F1 of the k-NN evaluator's top-1 prediction "
        "(weighted vote, cosine) per class (heat maps: one row per run, one column per class) and their macro "
        "averages (table), from the knn result rows (the evaluator's k and T, in the legend above); a run "
        "evaluated without per-class rows is recomputed from its cached embeddings with k = 20, T = 0.07 "
        "(column 'from').",
    ),
    (
        "reconstruction",
        "Reconstruction grids",
        "Test images after the reconstruction evaluator: originals "
        "(top row), perturbed inputs (noise + masked patches), frozen-encoder reconstructions, fine-tuned "
        "reconstructions (bottom row).",
    ),
    (
        "energy",
        "Energy landscapes (mog2d)",
        "E(x) = −cos(f(x), f(anchor)) over the plane for every method "
        "trained on mog2d; blue = low energy (similar to the anchor, red star), grey dots = test points.",
    ),
    (
        "dsm",
        "Denoising score matching (mog2d)",
        "The learned score as a vector field at the smallest noise "
        "level, and samples drawn from it by annealed Langevin dynamics next to the true mixture.",
    ),
]

CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;
max-width:1400px;color:#222;padding:0 16px}h1{font-size:26px}h2{border-bottom:1px solid #ccc;padding-bottom:4px;
margin-top:36px}table{border-collapse:collapse;font-size:12px;margin:8px 0}th,td{border:1px solid #ccc;
padding:3px 6px;text-align:right}th{background:#f0f0f0}td:first-child,td:nth-child(2),td:nth-child(3)
{text-align:left}img{max-width:100%;height:auto;border:0}figure{margin:12px 0}figcaption,.note{color:#555;
font-size:13px}.grid{display:flex;flex-wrap:wrap;gap:16px}.grid figure{margin:0}.missing{color:#a33}
nav.toc{font-size:14px;background:#f7f7f7;border:1px solid #ddd;padding:8px 16px;display:inline-block}
nav.toc ul{margin:4px 0;padding-left:20px}nav.toc>ul{padding-left:0;list-style:none}"""


@dataclass
class Run:
    """A trained run (``config.json`` + checkpoints) or a baseline (results only)."""

    path: Path
    method: str
    dataset: str
    backbone: str
    seed: int
    config: dict = field(default_factory=dict)
    checkpoint: Path | None = None
    kind: str = ""  # the data kind of a trained run (checkpoint metadata): image, vector ...

    @property
    def backbone_name(self) -> str:
        """The backbone's registered name (a run stored under its former name gets today's)."""
        from .backbones import real_backbone_name

        return real_backbone_name(self.method, self.backbone, self.config)

    @property
    def label(self) -> str:
        return _with_backbone(self.method, self.backbone_name)

    @property
    def is_baseline(self) -> bool:
        return self.checkpoint is None


def _with_backbone(method: str, backbone: str) -> str:
    """A figure's name of a run: the method, and the backbone's name (a table's backbone label cut to
    its name, :func:`ssl_bench.backbones.label_name`) unless it is a default one."""
    from .backbones import label_name

    name = label_name(backbone)
    return method if name in ("-", "cnn-small", "mlp", "") else f"{method} ({name})"


def find_runs(runs_dir: Path) -> list[Run]:
    out = []
    for d in sorted(p for p in Path(runs_dir).iterdir() if p.is_dir()) if Path(runs_dir).is_dir() else []:
        ckpt = latest_epoch_checkpoint(d / "checkpoints")
        if ckpt is not None and (d / "config.json").is_file():
            meta = json.loads(ckpt.with_suffix(".json").read_text()) if ckpt.with_suffix(".json").is_file() else {}
            cfg = json.loads((d / "config.json").read_text())
            out.append(
                Run(
                    d,
                    cfg["method"],
                    cfg["dataset"],
                    meta.get("backbone", cfg.get("backbone", "?")),
                    int(cfg.get("seed", 0)),
                    cfg,
                    ckpt,
                    str(meta.get("kind", "")),
                )
            )
        elif (d / "results.jsonl").is_file():
            with open(d / "results.jsonl") as f:
                first = next((json.loads(line) for line in f if line.strip()), None)
            if first:
                out.append(
                    Run(d, first["method"], first["dataset"], first.get("backbone", "-"), int(first.get("seed", 0)))
                )
    return out


def one_per_key(runs: list[Run]) -> list[Run]:
    """The lowest-seed run of each (method, backbone), references first, then by method name (a
    run stored under a backbone's former name counts as one of that backbone: one figure name each)."""
    best: dict[tuple, Run] = {}
    for r in runs:
        k = (r.method, r.backbone_name)
        if k not in best or r.seed < best[k].seed:
            best[k] = r
    return sorted(best.values(), key=lambda r: (not r.is_baseline, r.method, r.backbone))


# -- data readers --------------------------------------------------------------------------------
def read_curve(run: Run) -> dict | None:
    p = run.path / "train_log.csv"
    if not p.is_file():
        return None
    with open(p, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    c: dict[str, list] = {"epoch": [int(r["epoch"]) for r in rows], "loss": [float(r["loss"]) for r in rows]}
    mon = [(int(r["epoch"]), float(r["knn_monitor"]), _float(r.get("seconds"))) for r in rows if r.get("knn_monitor")]
    c["knn_epoch"], c["knn"] = [e for e, _, _ in mon], [v for _, v, _ in mon]
    c["knn_seconds"] = [t for _, _, t in mon] if all(t is not None for _, _, t in mon) else []
    if checks := read_monitor_checks(run.path / MONITOR_FILE):  # one row per monitor check, where written
        c["knn_epoch"], c["knn"], c["knn_seconds"] = (list(col) for col in zip(*checks, strict=True))
    steps = read_steps(run.path / STEPS_FILE)
    c["step_epoch"], c["step_loss"] = [r["epoch"] for r in steps], [r["loss"] for r in steps]
    return c


def read_spectrum(path: Path) -> np.ndarray | None:
    """A ``collapse-spectrum.npy`` artifact (a 1-D array of real numbers), or None with a warning
    naming the file when it is damaged (truncated, an object array, another shape): one bad
    artifact leaves its run out of the figure, never the whole report."""
    from .errors import warn

    try:
        s = np.load(path, allow_pickle=False)
        if not isinstance(s, np.ndarray) or s.ndim != 1 or not len(s) or not np.issubdtype(s.dtype, np.number):
            raise ValueError(f"expected a 1-D numeric array, got {getattr(s, 'shape', type(s).__name__)}")
        if np.iscomplexobj(s):
            raise ValueError("complex values")
    except Exception as exc:  # any damage of a data file: ValueError, EOFError, OSError, BadZipFile...
        warn(f"skipped {path}: not a readable spectrum ({type(exc).__name__}: {exc})")
        return None
    return s


#: One row per online k-NN monitor check (``seconds,step,epoch,knn,...``), written by trainers that
#: record every check; runs without it have the per-epoch ``knn_monitor`` and ``seconds`` of
#: ``train_log.csv``, which :func:`read_curve` reads instead.
MONITOR_FILE = "monitor.csv"


def read_monitor_checks(path: Path) -> list[tuple[int, float, float]]:
    """(epoch, k-NN %, training seconds) of every readable row of a ``monitor.csv``."""
    if not path.is_file():
        return []
    out = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                knn, secs, ep = _float(r.get("knn")), _float(r.get("seconds")), _float(r.get("epoch"))
                if knn is not None and secs is not None and ep is not None:
                    out.append((int(ep), knn, secs))
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
    return out


def _float(v: str | None) -> float | None:
    try:
        return float(v) if v not in (None, "") else None
    except ValueError:
        return None


def latest_artifact(run: Run, name: str) -> Path | None:
    """``<run>/artifacts/<prefix><name>`` of the run's last checkpoint (prefix ``epoch_NNNN-``,
    :func:`ssl_bench.checkpoint.artifact_dir`), or ``<run>/artifacts/<name>`` of a baseline. Runs
    evaluated before 2026-11-30 kept them in ``checkpoints/artifacts/``; that folder is read too."""
    if run.checkpoint is not None:
        name = f"{run.checkpoint.stem}-{name}"
        for folder in (artifact_dir(run.checkpoint), run.checkpoint.parent / "artifacts"):
            if (folder / name).is_file():
                return folder / name
        return None
    p = run.path / "artifacts" / name
    return p if p.is_file() else None


def cached_embeddings(run: Run) -> Embeddings | None:
    """The cached embeddings of the run's last checkpoint (largest split if several), or None."""
    from .embeddings import Embeddings

    if run.checkpoint is None:
        return None
    files = sorted((run.path / "embeddings").glob(f"{run.checkpoint.stem}-*.npz"), key=lambda p: p.stat().st_size)
    return Embeddings.load(files[-1]) if files else None


def pca2(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:2].T


def knn_prf_from_rows(rows: pd.DataFrame) -> dict[str, Any] | None:
    """Per-class and macro precision / recall / F1 (percent) from one run's ``knn`` result rows, or
    None when the rows have no per-class values (evaluated before these metrics existed, or more
    classes than the evaluator's ``per_class_max``)."""
    vals = {m: float(v) for m, v in zip(rows["metric"], rows["value"], strict=True)}
    per: dict[str, dict[int, float]] = {"precision": {}, "recall": {}, "f1": {}}
    for m, v in vals.items():
        if hit := re.fullmatch(r"(precision|recall|f1)_class(\d+)", m):
            per[hit.group(1)][int(hit.group(2))] = v
    if not per["f1"]:
        return None
    classes = sorted(per["f1"])
    out: dict[str, Any] = {k: np.array([per[k].get(c, np.nan) for c in classes]) for k in per}
    out.update(
        classes=classes,
        top1=vals.get("top1", float("nan")),
        source="result rows",
        **{f"{k}_macro": vals.get(f"{k}_macro", float(np.nanmean(out[k]))) for k in per},
    )
    return out


def knn_prf(emb: Embeddings) -> dict[str, Any]:
    """The same, recomputed from cached embeddings with the ``knn`` evaluator's defaults."""
    from ssl_bench.evaluators.knn import KNN, knn_accuracy
    from ssl_bench.evaluators.knn import knn_prf as prf

    k, t = KNN.defaults["k"], KNN.defaults["temperature"]
    train_y, test_y = emb.labels()
    m = prf(emb.train_x, train_y, emb.test_x, test_y, k, t)
    out = {key: 100 * m[key] for key in ("precision", "recall", "f1")}
    out.update(
        classes=[int(c) for c in m["classes"]],
        source=f"recomputed (k = {k}, T = {t:g})",
        top1=knn_accuracy(emb.train_x, train_y, emb.test_x, test_y, k, t)["top1"],
        **{f"{key}_macro": float(out[key].mean()) for key in ("precision", "recall", "f1")},
    )
    return out


def _mog_grid(data: Data, n: int = 120, pad: float = 1.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from .data import in_memory

    xtr, xte = in_memory(data.x_train, "the mog2d panels"), in_memory(data.x_test, "the mog2d panels")
    lo = float(min(xtr.min(), xte.min())) - pad
    hi = float(max(xtr.max(), xte.max())) + pad
    xs = np.linspace(lo, hi, n, dtype=np.float32)
    gx, gy = np.meshgrid(xs, xs)
    return xs, xs, np.stack([gx.ravel(), gy.ravel()], 1)


def energy_panel(run: Run, data: Data) -> dict[str, np.ndarray]:
    """E(x) = -cos(f(x), f(anchor)) on a grid; the anchor is the test point nearest the first
    mixture centre (or the first test point)."""
    import torch

    from .data import in_memory
    from .embeddings import load_method_from_checkpoint

    assert run.checkpoint is not None  # energy panels are drawn for trained runs only
    method, _, _ = load_method_from_checkpoint(run.checkpoint, torch.device("cpu"))
    xs, ys, pts = _mog_grid(data)
    xte = in_memory(data.x_test, "the energy panel").numpy()
    centre = np.asarray(data.info.get("centers", [xte[0]])[0], dtype=np.float32)
    anchor = xte[np.argmin(((xte - centre) ** 2).sum(1))]
    with torch.no_grad():
        f = method.encode(torch.from_numpy(pts)).float()
        fa = method.encode(torch.from_numpy(anchor[None])).float()
        e = -torch.nn.functional.cosine_similarity(f, fa, dim=1).numpy()
    return {"xs": xs, "ys": ys, "energy": e.reshape(len(ys), len(xs)), "data": xte, "anchor": anchor}


def dsm_panel(
    run: Run, data: Data, n_samples: int = 1000, levels: int = 8, steps: int = 50, step: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float] | None:
    """(xs, ys, score grid at sigma_min, Langevin samples, sigma_min): the full DSM method (trunk +
    score head) from ``checkpoints/resume.pt``; annealed Langevin dynamics (Song & Ermon 2019, Alg. 1)
    over ``levels`` noise levels from sigma_max to sigma_min, ``steps`` steps of size ``step`` · σ² each."""
    import torch

    from .checkpoint import load_resume
    from .config import RunConfig
    from .data import in_memory
    from .method import DataSpec
    from .trainer import build_method

    resume = run.path / "checkpoints" / "resume.pt"
    if not resume.is_file():
        return None
    cfg = RunConfig.from_dict(run.config)
    method = build_method(cfg, DataSpec("vector", tuple(data.input_shape)))
    method.load_state_dict(load_resume(resume)["method"])
    method.eval()
    h = method.hp

    dsm_score = cast(Callable[[torch.Tensor, float], torch.Tensor], method.score)  # the DSM method's own

    def score(
        x: torch.Tensor, sigma: float
    ) -> torch.Tensor:  # the method's own score s(x~, sigma) = (r(x~, sigma) - x~) / sigma^2
        return dsm_score(x, float(sigma)).view(x.shape)

    xs, ys, pts = _mog_grid(data, n=25)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        field_ = score(torch.from_numpy(pts), h.sigma_min).numpy().reshape(len(ys), len(xs), 2)
        spread = float(in_memory(data.x_train, "the DSM panel").std()) * 1.5
        x = torch.randn(n_samples, 2, generator=g) * spread
        for sigma in np.geomspace(h.sigma_max, h.sigma_min, levels):
            a = step * float(sigma) ** 2
            for _ in range(steps):
                x = x + a / 2 * score(x, sigma) + (a**0.5) * torch.randn(x.shape, generator=g)
    return xs, ys, field_, x.numpy(), h.sigma_min


# -- HTML ----------------------------------------------------------------------------------------
def _img(png: bytes, alt: str, min_width: int = 0) -> str:
    """An embedded PNG; small images (e.g. 8x8-pixel digit grids) are shown scaled up by an integer
    factor to at least ``min_width`` CSS pixels, pixelated rather than blurred."""
    style = ""
    w = int.from_bytes(png[16:20], "big") if png[12:16] == b"IHDR" else 0
    if 0 < w < min_width:
        style = f' style="width:{w * -(-min_width // w)}px;image-rendering:pixelated"'
    return f'<img alt="{html.escape(alt)}"{style} src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _md_inline(text: str) -> str:
    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    t = re.sub(r"(?<![\w])_(.+?)_(?![\w])", r"<i>\1</i>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


def markdown_table_html(md: str) -> str:
    """The leaderboard markdown (paragraphs, the legend's "- " list, one pipe table) as HTML; the heading
    is dropped."""
    out: list[str] = []
    rows: list[list[str]] = []
    items: list[str] = []
    for line in md.splitlines():
        if items and not line.startswith("- "):  # the legend's metric list ends
            out.append('<ul class="note">' + "".join(f"<li>{i}</li>" for i in items) + "</ul>")
            items = []
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                rows.append(cells)
        elif line.startswith("- "):
            items.append(_md_inline(line[2:]))
        elif line.strip() and not line.startswith("#"):
            out.append(f'<p class="note">{_md_inline(line)}</p>')
    if items:
        out.append('<ul class="note">' + "".join(f"<li>{i}</li>" for i in items) + "</ul>")
    if rows:
        head = "".join(f"<th>{_md_inline(c)}</th>" for c in rows[0])
        body = "".join("<tr>" + "".join(f"<td>{_md_inline(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
        out.append(f'<table class="leaderboard"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')
    return "\n".join(out)


def _section(sid: str, title: str, caption: str, body: str) -> str:
    return (
        f'<section id="{sid}"><h2>{html.escape(title)}</h2><p class="note">{html.escape(caption)}</p>{body}</section>'
    )


@dataclass
class Skip:
    """A figure section left out of the page: ``why`` is named in the dataset's "not drawn" note;
    empty when the section does not apply to the dataset at all (then it is not mentioned)."""

    why: str = ""


def _missing(why: str) -> Skip:
    return Skip(why)


def dataset_sections(
    ds: str, runs: list[Run], frame: pd.DataFrame, log: Callable[[str], None] | None = None
) -> tuple[str, dict[str, str | Skip]]:
    """(leaderboard HTML, {section id: body HTML, or :class:`Skip` for a section left out}) for one
    dataset."""
    from .leaderboard import aggregate, to_markdown

    log = log or (lambda msg: None)
    sub = frame[frame["dataset"] == ds] if len(frame) else frame
    table = aggregate(sub) if len(sub) else None
    # with the rows (df): the metric columns, the legend and the options, as leaderboards/<dataset>.md has them
    lb = (
        markdown_table_html(to_markdown(table, ds, "ssl-bench report", df=sub))
        if table is not None
        else '<p class="note">No result rows for this dataset yet.</p>'
    )
    picked = one_per_key([r for r in runs if r.dataset == ds])
    trained = [r for r in picked if not r.is_baseline]
    body: dict[str, str | Skip] = {}

    def timed(sid: str, fn: Callable[[], str | Skip]) -> None:
        t0 = time.perf_counter()
        try:
            body[sid] = fn()
        finally:
            log(f"[report] {ds} {sid}: {time.perf_counter() - t0:.1f}s")

    def curves() -> tuple[str | Skip, str | Skip]:
        cs = {r.label: c for r in trained if (c := read_curve(r))}
        if not cs:
            return _missing("no run has a train_log.csv"), _missing("no run has a train_log.csv")
        mon = {k: c for k, c in cs.items() if c["knn"]}
        return (
            _img(figures.learning_curves(cs), f"{ds} learning curves"),
            _img(figures.monitor_overlay(mon), f"{ds} k-NN monitor")
            if mon
            else _missing(
                "no run logged the monitor (knn_monitor_every = 0, as in the smoke preset; on in quick and full)"
            ),
        )

    t0 = time.perf_counter()
    body["curves"], body["monitor"] = curves()
    log(f"[report] {ds} curves: {time.perf_counter() - t0:.1f}s")

    def spectra() -> str | Skip:
        paths = {r.label: p for r in picked if (p := latest_artifact(r, "collapse-spectrum.npy"))}
        sp = {k: s for k, p in paths.items() if (s := read_spectrum(p)) is not None}
        return (
            _img(figures.eigen_spectra(sp), f"{ds} eigen-spectra")
            if sp
            else _missing("no run has collapse-spectrum.npy artifacts (add the collapse evaluator)")
        )

    timed("spectra", spectra)

    def rankme() -> str | Skip:
        if table is None or "rankme_rank_mean" not in table or "knn_top1_mean" not in table:
            return _missing("no rankme and knn result rows (add the rankme and knn evaluators)")
        pts = {}
        for _, r in table.iterrows():
            if np.isfinite(r["rankme_rank_mean"]) and np.isfinite(r["knn_top1_mean"]):
                name = _with_backbone(str(r["method"]), str(r["backbone"]))
                pts[name] = (float(r["rankme_rank_mean"]), float(r["knn_top1_mean"]))
        return (
            _img(figures.rankme_vs_knn(pts), f"{ds} RankMe vs k-NN")
            if pts
            else _missing("no finite RankMe and k-NN values")
        )

    timed("rankme", rankme)

    embs = {r.label: e for r in trained if (e := cached_embeddings(r)) is not None}

    def pca() -> str | Skip:
        if not embs:
            return _missing("no run has cached embeddings (run an evaluator on the checkpoints)")
        panels = {}
        for k, e in embs.items():
            sel = np.random.default_rng(0).permutation(len(e.test_x))[:2000]
            panels[k] = (pca2(e.test_x[sel].astype(np.float64)), None if e.test_y is None else e.test_y[sel])
        return _img(figures.pca_scatters(panels), f"{ds} PCA scatters")

    timed("pca", pca)

    def prf() -> str | Skip:
        knn_rows = (
            frame[(frame["dataset"] == ds) & (frame["evaluator"] == "knn") & (frame["status"] == "ok")]
            if len(frame)
            else frame
        )
        res = {}
        for r in picked:
            got = knn_prf_from_rows(knn_rows[knn_rows["run_id"] == r.path.name]) if len(knn_rows) else None
            if got is None and (e := embs.get(r.label)) is not None and e.train_y is not None and e.test_y is not None:
                got = knn_prf(e)
            if got is not None:
                res[r.label] = got
        if not res:
            return _missing("no knn rows with per-class values and no cached labelled embeddings")
        rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{v['top1']:.2f}</td><td>{v['precision_macro']:.2f}</td>"
            f"<td>{v['recall_macro']:.2f}</td><td>{v['f1_macro']:.2f}</td><td>{html.escape(v['source'])}"
            "</td></tr>"
            for k, v in res.items()
        )
        tab = (
            '<table class="prf"><thead><tr><th>method</th><th>top-1 %</th><th>macro precision %</th>'
            f"<th>macro recall %</th><th>macro F1 %</th><th>from</th></tr></thead><tbody>{rows}</tbody></table>"
        )
        return _img(figures.prf_heatmaps(res), f"{ds} per-class precision, recall and F1") + tab

    timed("knn-prf", prf)

    def recon() -> str | Skip:
        items = [(r.label, p) for r in trained if (p := latest_artifact(r, "reconstruction.png"))]
        if not items and trained and all(r.kind == "vector" for r in trained):
            return Skip()  # an image grid: does not apply to vector data
        if not items:
            return _missing("no reconstruction.png artifacts (add the reconstruction evaluator)")
        return (
            '<div class="grid">'
            + "".join(
                f"<figure>{_img(p.read_bytes(), f'{ds} {k} reconstruction', min_width=320)}"
                f"<figcaption>{html.escape(k)}</figcaption></figure>"
                for k, p in items
            )
            + "</div>"
        )

    timed("reconstruction", recon)

    mog = [r for r in trained if r.dataset == "mog2d"]
    if mog:
        from .data import load_dataset

        data = load_dataset("mog2d", **mog[0].config.get("dataset_kwargs", {}))

        def energy() -> str:  # small MLPs: one thread (ssl_bench.stats.small_work_threads), 10x faster when loaded
            with small_work_threads(0):
                return _img(
                    figures.energy_landscapes({r.label: energy_panel(r, data) for r in mog}), f"{ds} energy landscapes"
                )

        timed("energy", energy)

        def dsm() -> str | Skip:
            parts = []
            for r in (r for r in mog if r.method == "dsm"):
                with small_work_threads(0):
                    res = dsm_panel(r, data)
                if res is not None:
                    xs, ys, sc, samples, sigma = res
                    test_x = np.asarray(data.x_test)  # mog2d: always an in-memory tensor
                    parts.append(
                        _img(
                            figures.dsm_field(xs, ys, sc, samples, test_x, sigma, r.label),
                            f"{ds} {r.label} DSM field and Langevin samples",
                        )
                    )
            if not parts and not any(r.method == "dsm" for r in mog):
                return Skip()  # no dsm run: nothing to draw, nothing missing
            return "".join(parts) or _missing("no dsm run with checkpoints/resume.pt")

        timed("dsm", dsm)
    else:  # drawn for mog2d runs only: left out elsewhere
        body["energy"] = body["dsm"] = Skip()
    return lb, body


def _skipped_why(got: str | Skip) -> str:
    return got.why if isinstance(got, Skip) else ""


def table_of_contents(bodies: dict[str, dict[str, str | Skip]]) -> str:
    """Links to every dataset's leaderboard and drawn figures (section ids as :func:`build_html`
    writes them: prefixed with the dataset when there are several)."""
    titles = {sid: title for sid, title, _ in SECTIONS}
    items = []
    for ds, body in bodies.items():
        prefix = "" if len(bodies) == 1 else f"{ds}-"
        links = [("leaderboard", "Leaderboard")] + [(sid, titles[sid]) for sid in titles if isinstance(body[sid], str)]
        sub = "".join(f'<li><a href="#{html.escape(prefix + sid)}">{html.escape(t)}</a></li>' for sid, t in links)
        items.append(f'<li><a href="#{html.escape(ds)}"><b>{html.escape(ds)}</b></a><ul>{sub}</ul></li>')
    return f'<nav class="toc" id="contents"><b>Contents</b><ul>{"".join(items)}</ul></nav>'


def build_html(runs_dir: Path, log: Callable[[str], None] | None = None) -> str:
    from .leaderboard import load_frame

    runs_dir = Path(runs_dir)
    frame = load_frame(runs_dir)
    runs = find_runs(runs_dir)
    datasets = sorted((set(frame["dataset"]) if len(frame) else set()) | {r.dataset for r in runs})
    parts = [
        f'<h1>ssl-bench report</h1><p class="note">From <code>{html.escape(str(runs_dir))}</code>, '
        f"{len(runs)} runs, generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by "
        "<code>ssl-bench report</code>. Self-contained: every image is embedded.</p>"
    ]
    built = {ds: dataset_sections(ds, runs, frame, log) for ds in datasets}
    parts.append(table_of_contents({ds: body for ds, (_, body) in built.items()}))
    for ds, (lb, body) in built.items():
        prefix = "" if len(datasets) == 1 else f"{ds}-"
        parts.append(f'<h1 id="{html.escape(ds)}">{html.escape(ds)}</h1>')
        parts.append(
            _section(
                f"{prefix}leaderboard",
                f"Leaderboard: {ds}",
                "The leaderboard table "
                "(ssl-bench leaderboard): n = seeds; with n ≥ 2 a cell is the mean ± the 95% confidence "
                "half-width, and bold marks the best row and those tied with it.",
                lb,
            )
        )
        for sid, title, caption in SECTIONS:
            if isinstance(got := body[sid], str):
                parts.append(_section(prefix + sid, title, caption, got))
        left_out = [(title, why) for sid, title, _ in SECTIONS if (why := _skipped_why(body[sid]))]
        if left_out:
            items = "".join(f"<li>{html.escape(t)}: {html.escape(why)}</li>" for t, why in left_out)
            parts.append(
                f'<div class="note" id="{prefix}not-drawn">Not drawn for {html.escape(ds)}:<ul>{items}</ul></div>'
            )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>ssl-bench report</title>'
        f"<style>{CSS}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )


def write_report(runs_dir: Path, out_dir: Path, log: Callable[[str], None] | None = None) -> Path:
    """Write ``out_dir/index.html`` from ``runs_dir``; returns its path."""
    from .errors import SSLBenchError

    if not Path(runs_dir).is_dir() or not find_runs(Path(runs_dir)):
        raise SSLBenchError(f"no runs under {runs_dir}: run `ssl-bench run` first")
    page = build_html(Path(runs_dir), log)
    out = Path(out_dir) / "index.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, page)
    return out

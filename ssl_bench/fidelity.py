"""Each method's paper recipe next to ssl-bench's defaults, and the fidelity table built from them.

A method declares ``paper = PaperRecipe(...)``: the source it follows, the paper's values of the
method's own options (``hparams``, same keys as ``Method.defaults``), of the optimiser
(``optim``: optimizer, lr, weight_decay) and, as text, its heads, views, EMA and temperature.
ssl-bench's heads are not declared but derived from the method's defaults (:func:`our_heads`), so
they cannot go stale. Every option whose default differs from the paper's value must carry a reason in
``deviations`` (keyed by the option name, or by ``optimizer``/``lr``/``weight_decay``/``views``/
``heads``/``ema``/``backbone``); :func:`check` says what is missing. ``docs/fidelity.md`` is
generated from these declarations (``python -m ssl_bench.fidelity --write docs/fidelity.md``) and a
test keeps it in step.

ssl-bench recipes are tuned on a validation split carved from the training set (or kept at the
paper's values), never on the test set.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TYPE_CHECKING

if TYPE_CHECKING:
    from .method import Method

#: The optimiser settings the harness uses when neither the method nor the config sets them
#: (kept equal to ssl_bench.optim.DEFAULT_LR / DEFAULT_WD for AdamW; a test checks it).
HARNESS_OPTIM = {"optimizer": "adamw", "lr": 2e-3, "weight_decay": 1e-4}

#: What every declaration describes, as text or values.
ASPECTS = ("heads", "optimizer", "lr", "weight_decay", "ema", "views", "temperature")

#: Option names that give a method's head shapes (projector / predictor / decoder widths and depths).
HEAD_KEYS = ("dim", "layers", "depth", "heads", "prototypes", "predictor", "channels")

# Reasons shared by many declarations; each is true of every method that cites it.
WHY_OPTIMIZER = (
    "one optimiser for every method, the harness's AdamW: at batch 128-256 and a few hundred steps "
    "LARS/SGD would need a per-method learning-rate search we cannot afford on 2 CPU cores"
)
WHY_LR = (
    "the harness's AdamW lr 2e-3 (10% linear warm-up, cosine to 0); the paper's lr belongs to its optimiser "
    "and batch size"
)
WHY_WD = "the harness's AdamW weight decay 1e-4 (none on 1-D parameters); the paper's value belongs to its optimiser"
WHY_WIDTH = (
    "heads narrowed for a 128-d backbone on 2 CPU cores; the paper's widths are for 2048-d ResNet-50 (or ViT) features"
)
WHY_VIEWS = (
    "28 px grey images: no colour jitter or grayscale (one channel) and no blur (not used at 28 px); "
    "random resized crop 0.3-1 (ssl-bench's default), flip, brightness/contrast 0.4 with p 0.8. Brightness "
    "then contrast, always in that order, the contrast pulling towards the image's mean taken before the "
    "brightness change, with no clamp in between (torchvision's ColorJitter: a random order, and the mean of "
    "the brightened, clamped image), so the brightness shift of the image's mean is scaled by the contrast "
    "factor (ssl_bench.views.color_jitter; minor, not measured)"
)
#: The ViT encoder of ijepa and mae (timm's VisionTransformer with ``global_pool="avg"``), against the
#: references' encoders (ijepa src/models/vision_transformer.py, mae models_mae.py).
WHY_VIT_ENCODER = (
    "timm's ViT with global_pool 'avg' and no class token: its position embedding is learned (the reference's "
    "is a fixed 2-D sin-cos one) and the patch tokens get no final LayerNorm (timm replaces the final norm by "
    "fc_norm, applied after the pooling; the reference normalises every token). Evaluation embeds the "
    "average-pooled tokens through that fc_norm, which training never reaches: it keeps its init (weight 1, "
    "bias 0), a per-image standardisation of the pooled features (minor, not measured)"
)
WHY_EMA = (
    "the paper's momentum is tuned for 10^4-10^5+ steps: ssl-bench starts from ema_tau 0.99 and "
    "ssl_bench.ema raises 1 - tau_0 to 10 / total_steps on shorter runs, so the target does not keep a large "
    "share of its random init (about 21% at the quick preset's 312 steps with a cosine from 0.99)"
)
#: ssl-bench's EMA schedule (ssl_bench.ema), as the fidelity table states it.
OUR_EMA = "cosine tau_0 -> 1, 1 - tau_0 = max(1 - ema_tau, 10 / total_steps), ema_tau 0.99 (ssl_bench.ema)"
WHY_TUTORIAL = (
    "the JEA tutorial fixes no training recipe for this model (toy 2-D data); ssl-bench uses its harness defaults"
)


def collapse_reference_recipe(source: str) -> PaperRecipe:
    """The declaration of the tutorial's collapse references (jepa, jepa-pairwise): no projector,
    two views, no training recipe given by the tutorial."""
    return PaperRecipe(
        source=source,
        heads="none (the backbone's embedding)",
        views="two views of one sample (the tutorial's 2-D mixtures; image augmentations not specified)",
        optim=dict(optimizer="not specified", lr="not specified", weight_decay="not specified"),
        ours=dict(views="crop 0.3-1, flip, brightness/contrast 0.4 (p 0.8)"),
        deviations=dict(
            heads="proj_dim=0: no projector, as the tutorial",
            views=WHY_TUTORIAL,
            optimizer=WHY_TUTORIAL,
            lr=WHY_TUTORIAL,
            weight_decay=WHY_TUTORIAL,
        ),
    )


@dataclass(frozen=True)
class PaperRecipe:
    source: str  # paper and the recipe followed (e.g. "Chen et al. 2020, CIFAR-10 recipe, App. B.9")
    heads: str  # the paper's heads, e.g. "projector 2048-2048-128"
    views: str  # the paper's augmentations
    ema: str = "none"  # the paper's EMA target schedule, or "none"
    temperature: str = "none"  # the paper's temperature(s), or "none"
    hparams: dict[str, Any] = field(default_factory=dict)  # paper values of Method.defaults keys
    optim: dict[str, Any] = field(default_factory=dict)  # paper optimizer / lr / weight_decay
    ours: dict[str, str] = field(default_factory=dict)  # ssl-bench's views/ema/temperature, as text (heads: derived)
    deviations: dict[str, str] = field(default_factory=dict)  # key -> why ssl-bench differs


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(_fmt(x) for x in v) + ")"
    return str(v)


def our_heads(cls: type[Method]) -> str:
    """ssl-bench's head shapes, as text derived from the method's defaults (never hand-written)."""
    items = [f"{k}={_fmt(v)}" for k, v in cls.defaults.items() if any(h in k for h in HEAD_KEYS)]
    return ", ".join(items) if items else "none (the backbone's embedding)"


def method_rows(cls: type[Method]) -> list[dict[str, str]]:
    """One row per compared item of a method class: item, paper, ssl-bench, differs, reason."""
    p: PaperRecipe | None = getattr(cls, "paper", None)
    if p is None:
        return []
    # the trainer takes lr and weight_decay from optim_defaults, the optimiser only from the config
    prefs = getattr(cls, "optim_defaults", {})
    ours_optim = {**HARNESS_OPTIM, **{k: v for k, v in prefs.items() if k in ("lr", "weight_decay")}}
    rows = []
    for k in ("heads", "views", "ema", "temperature"):
        paper_v = getattr(p, k)
        our_v = our_heads(cls) if k == "heads" else p.ours.get(k)
        if our_v is None:  # not declared: ssl-bench does what the paper does
            rows.append(dict(item=k, paper=paper_v, ours="= paper", differs="False", reason=p.deviations.get(k, "")))
            continue
        rows.append(
            dict(item=k, paper=paper_v, ours=our_v, differs=str(paper_v != our_v), reason=p.deviations.get(k, ""))
        )
    compared = [(k, v, ours_optim.get(k)) for k, v in p.optim.items()]
    compared += [(k, v, cls.defaults.get(k, "<no such option>")) for k, v in p.hparams.items()]
    for k, paper_value, our_value in compared:
        paper_s, ours_s = _fmt(paper_value), _fmt(our_value)
        rows.append(
            dict(item=k, paper=paper_s, ours=ours_s, differs=str(paper_s != ours_s), reason=p.deviations.get(k, ""))
        )
    for k, why in p.deviations.items():  # deviations with no compared value (e.g. backbone, budget)
        if k not in {r["item"] for r in rows}:
            rows.append(dict(item=k, paper="", ours="", differs="True", reason=why))
    return rows


def check(cls: type[Method]) -> list[str]:
    """Problems with a method's declaration: missing, unknown option names, unexplained deviations."""
    name = getattr(cls, "registry_name", cls.__name__)
    p = getattr(cls, "paper", None)
    if not isinstance(p, PaperRecipe):
        return [f"{name}: no `paper = PaperRecipe(...)` declaration"]
    out = []
    if not p.source.strip():
        out.append(f"{name}: the declaration names no source")
    for k in p.ours:
        if k not in ("views", "ema", "temperature"):
            out.append(f"{name}: ours[{k!r}] is not declared by hand (heads are derived from the defaults)")
    for k in p.hparams:
        if k not in cls.defaults:
            out.append(f"{name}: paper hparam {k!r} is not an option of the method")
    for k in ("optimizer", "lr", "weight_decay"):
        if k not in p.optim:
            out.append(f"{name}: paper optim lacks {k!r}")
    for r in method_rows(cls):
        if r["differs"] == "True" and not r["reason"].strip():
            out.append(f"{name}: {r['item']} differs from the paper ({r['paper']} vs {r['ours']}) with no reason")
    return out


def builtin_methods() -> list[tuple[str, type]]:
    """(name, class) of ssl-bench's own methods (``ssl_bench.methods``), without plugins from other packages."""
    from .registry import METHODS

    out = [(n, METHODS.get(n)) for n in METHODS.names()]
    return [(n, c) for n, c in out if c.__module__.startswith("ssl_bench.methods.")]


def _cell(s: Any) -> str:
    """A Markdown table cell: pipes escaped, newlines as spaces."""
    return str(s).replace("|", "\\|").replace("\n", " ")


def render_markdown() -> str:
    lines = [
        "# Fidelity: each method's paper recipe next to ssl-bench's defaults",
        "",
        "Generated by `python -m ssl_bench.fidelity --write docs/fidelity.md` from the `paper = "
        "PaperRecipe(...)` declaration in each method file; do not edit by hand (a test compares).",
        "",
        "Every row where ssl-bench differs from the paper carries its reason. ssl-bench recipes are "
        "tuned on a validation split carved from the training set (or kept at the paper's values), "
        "never on the test set: every trial behind a measured choice is in docs/tuning.md "
        "(scripts/tune_val.py). Common to all: the harness's optimiser is AdamW (lr 2e-3, weight "
        "decay 1e-4, 10% linear warm-up then cosine to 0) unless a method sets its own; ssl-bench's "
        'heads are derived from each method\'s defaults ("= paper": as the paper); the default backbone for '
        "28 px images is cnn-small (3 conv layers, 128-d output; ijepa and mae: vit-mini, a ViT of width 96 "
        "and depth 4 with 7-px patches, see their rows) where "
        "the papers train ResNet-18/50 or ViTs; "
        "budgets are the presets' "
        "(`quick`, `standard`), far below the papers' hundreds of epochs on ImageNet.",
        "",
    ]
    for name, cls in builtin_methods():
        p = getattr(cls, "paper", None)
        lines += [f"## {name}", ""]
        if p is None:
            lines += ["(no declaration)", ""]
            continue
        lines += [f"Source: {p.source}", "", "| item | paper | ssl-bench | why it differs |", "|---|---|---|---|"]
        for r in method_rows(cls):
            mark = "" if r["differs"] != "True" else " **≠**"
            cells = [_cell(r[k]) for k in ("item", "paper", "ours", "reason")]
            lines.append(f"| {cells[0]}{mark} | {cells[1]} | {cells[2]} | {cells[3]} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ssl_bench.fidelity", description=__doc__.splitlines()[0])
    ap.add_argument("--write", default=None, help="write the table to this file (default: print it)")
    a = ap.parse_args(argv)
    problems = [msg for _, cls in builtin_methods() for msg in check(cls)]
    for msg in problems:
        print(f"fidelity: {msg}", file=sys.stderr)
    text = render_markdown()
    if a.write:
        from .checkpoint import atomic_write_text

        atomic_write_text(Path(a.write), text)
    else:
        sys.stdout.write(text)
    return 1 if problems else 0


if __name__ == "__main__":
    # run as ``python -m ssl_bench.fidelity`` this file is ``__main__``, whose PaperRecipe is not the class
    # the method files import: use the package module's functions so that isinstance checks hold
    from ssl_bench.fidelity import main as _main

    sys.exit(_main())

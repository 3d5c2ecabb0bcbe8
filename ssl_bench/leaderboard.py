"""Aggregate result rows into ``leaderboards/<dataset>.csv`` and ``.md`` with pandas.

* **Identity.** One row per training configuration: (method, backbone, preset, epochs) and the
  hash of every other training key except the seed (:func:`ssl_bench.results.training_hash`).
  Runs that differ only in the seed aggregate; any other training difference is another row,
  labelled with what differs from the method's defaults (``byol [ema_tau=0.996]``). When a run
  was evaluated more than once, its latest value counts.
* **Backbone.** The backbone column names the backbone a row was built with and, for a ViT, its
  width, depth, patch size and token count (:func:`table_backbone`): ``vit-mini (w96 d4, 7-px
  patches, 16 tokens)``, also for the rows written before ``vit-mini`` had a name, which say
  ``timm:vit_tiny_patch16_224``. Rows are ranked, and compared with random-init, within that label;
  rows stored under another name stay rows of their own (a suffix tells them apart).
* **Uncertainty.** n = 1: the value alone. n >= 2: mean ± the half-width of the 95% Student-t
  confidence interval of the mean. The CSV keeps mean, std, n and the half-width of every metric.
* **Ties.** In each column of a metric with a direction, the best row (among rows with n >= 2)
  and every row a two-sided Welch t-test at 5% cannot tell apart from it are marked (bold in the
  Markdown, ``best`` / ``tied`` in the CSV). Welch rather than a bootstrap: with 3-5 seeds a
  bootstrap has too few distinct resamples to give a usable interval. Rows with n = 1 are never
  marked: one seed says nothing about noise. No correction for multiple comparisons.
* **Columns, legend, sort order** come from the evaluators' metric declarations
  (:class:`ssl_bench.evaluator.Metric`): an evaluator from another package adds columns without
  any change here.
* **Status.** A row ``status`` other than ``"ok"`` (a sweep's failure rows: ``diverged``,
  ``failed``) is shown instead of numbers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from .checkpoint import atomic_write_text
from .errors import ConfigError
from .evaluator import Metric
from .results import find_result_files, read_rows
from .stats import ALPHA, CONFIDENCE, t_half_width, welch_p

KEY = ["method", "backbone", "preset", "epochs", "train_hash"]
BASELINES = ("pixels", "random-init")
#: Reference rows whose value does not depend on the seed: shown without an interval, n = "—", never marked.
DETERMINISTIC = ("pixels",)
#: Built-in backbones with BN layers: their random-init rows written before the BN statistics were
#: recalibrated (no ``bn_stats`` in the row's method options) are labelled so.
BN_BACKBONES = ("cnn-small", "cnn-wide", "resnet18-cifar", "resnet50-cifar", "mlp")
#: The reference rows' own options, not listed in their labels (random-init: BN statistics re-estimated).
BASELINE_DEFAULTS = {"random-init": {"bn_stats": "train"}}
#: Config keys not listed in a row label: shown in their own columns, or the row's identity itself.
LABEL_SKIP = {"method", "dataset", "seed", "preset", "epochs", "backbone", "method_kwargs"}


# -- metric metadata --------------------------------------------------------------------------------
def metric_info(evaluator: str, metric: str) -> Metric:
    """The evaluator's declaration of a metric; a neutral one when the evaluator is not installed."""
    from .registry import EVALUATORS

    try:
        cls = EVALUATORS.get(evaluator)
    except Exception:  # rows of an evaluator not installed here: still shown, without a direction
        return Metric(
            metric,
            f"{evaluator} {metric}",
            higher_is_better=None,
            description=f"{evaluator} metric {metric!r} (evaluator not installed)",
        )
    return cls.metric(metric)


def _evaluator_order(evaluator: str) -> int:
    from .registry import EVALUATORS

    try:
        return int(getattr(EVALUATORS.get(evaluator), "order", 100))
    except Exception:
        return 100


def _legend_options(evaluator: str) -> tuple[str, ...]:
    from .registry import EVALUATORS

    try:
        return tuple(getattr(EVALUATORS.get(evaluator), "legend_options", ()))
    except Exception:
        return ()


def ordered_columns(df: pd.DataFrame) -> list[tuple[str, str, str, Metric]]:
    """(column, evaluator, metric, declaration) of every metric in ``df``, in table order: by the
    evaluator's ``order``, then its declaration order, then name."""
    pairs = df[["evaluator", "metric"]].dropna().drop_duplicates()
    out = []
    for ev, m in pairs.itertuples(index=False):
        info = metric_info(ev, m)
        from .registry import EVALUATORS

        try:
            decl = [d.name for d in EVALUATORS.get(ev).metrics]
            pos = decl.index(m) if m in decl else len(decl)
        except Exception:
            pos = 0
        out.append(((_evaluator_order(ev), ev, pos, m), f"{ev}_{m}", ev, m, info))
    return [(c, ev, m, info) for _, c, ev, m, info in sorted(out, key=lambda t: t[0])]


# -- labels -----------------------------------------------------------------------------------------
def _fmt_value(v: object) -> str:
    return json.dumps(v, sort_keys=True, default=str) if isinstance(v, (dict, list)) else str(v)


def config_label(method: str, config: dict | None) -> str:
    """``method [key=value, ...]``: the method options that differ from the method's defaults, then
    the other training keys that differ from a default config of the same method, dataset and
    preset (epochs and backbone have their own columns)."""
    from .config import NON_TRAINING_KEYS, RunConfig
    from .registry import METHODS

    config = config or {}
    diffs = []
    try:
        mdefaults = dict(METHODS.get(method).defaults)
    except Exception:  # baselines, or a method not installed here: every option given is listed
        mdefaults = dict(BASELINE_DEFAULTS.get(method, {}))
    for k, v in sorted((config.get("method_kwargs") or {}).items()):
        if k not in mdefaults or mdefaults[k] != v:
            diffs.append(f"{k}={_fmt_value(v)}")
    try:
        base = (
            RunConfig(
                method=str(method),
                dataset=str(config.get("dataset", "fashion-mnist")),
                preset=str(config.get("preset", "quick")),
            )
            .with_preset()
            .to_dict()
        )
    except Exception:
        base = {}
    config = _with_preset(config, base)
    for k in sorted(config):
        if k in LABEL_SKIP or k in NON_TRAINING_KEYS or k not in base:
            continue
        if config[k] != base[k]:
            diffs.append(f"{k}={_fmt_value(config[k])}")
    return f"{method} [{', '.join(diffs)}]" if diffs else str(method)


def _with_preset(config: dict, base: dict) -> dict:
    """``config`` with the preset's values filled in where it leaves them unset (None: the row of a
    run that diverged or failed stores its config before the preset was applied), so the label
    lists only keys that really differ; ``config`` as it is when it cannot be resolved."""
    from .config import RunConfig

    try:
        known = {k: v for k, v in config.items() if k in base}
        return {**config, **RunConfig.from_dict(known).with_preset().to_dict()}
    except Exception:  # a config of another version, or not a valid one: compared as it is
        return config


def row_backbone(method: str, backbone: str, config: dict | None) -> tuple[str, dict]:
    """(name, options) of the backbone a result row was built with: the row's backbone under its
    registered name (:func:`ssl_bench.backbones.real_backbone_name`: a row written before the
    backbone had a name of its own gets that name), with the config's ``backbone_kwargs`` on top of
    the options of the method that chose it when the config left the backbone to the method
    (``"auto"``; a random-init row: any method that prefers that backbone)."""
    from .backbones import real_backbone_name
    from .registry import METHODS

    cfg = config or {}
    own = dict(cfg.get("backbone_kwargs") or {})
    name = real_backbone_name(method, backbone, cfg)
    if cfg.get("backbone", "auto") not in ("auto", "", None):
        return name, own
    try:
        classes = [METHODS.get(method)] if method in METHODS else [METHODS.get(m) for m in METHODS.names()]
    except Exception:  # a registry that does not load: the config's options alone
        classes = []
    for cls in classes:
        for pref in (getattr(cls, "default_backbone", None) or {}).values():
            if pref[0] == name:
                return name, {**pref[1], **own}
    return name, own


def table_backbone(method: str, backbone: str, config: dict | None) -> str:
    """The backbone cell of a table row (:func:`ssl_bench.backbones.backbone_label` of
    :func:`row_backbone` on the row's dataset's image size): a ViT with its width, depth, patch size
    and tokens, any other backbone by name; ``-`` (pixels) as it is."""
    from .backbones import backbone_label
    from .data import image_size

    if backbone in ("-", "", None) or (isinstance(backbone, float) and math.isnan(backbone)):
        return str(backbone)
    name, kwargs = row_backbone(method, str(backbone), config)
    cfg = config or {}
    hw = image_size(str(cfg["dataset"]), cfg.get("dataset_kwargs")) if cfg.get("dataset") else None
    return backbone_label(name, kwargs, hw)


# -- loading and aggregation ------------------------------------------------------------------------
def load_frame(runs_dir: Path) -> pd.DataFrame:
    rows = read_rows(find_result_files(runs_dir))
    if not rows:
        return pd.DataFrame(columns=KEY + ["dataset", "seed", "evaluator", "metric", "value", "status", "run_id"])
    df = pd.DataFrame(rows)
    df["status"] = df["status"].fillna("ok")
    df = df.sort_values("timestamp", na_position="first", kind="stable")
    ok = df[df["status"] == "ok"].drop_duplicates(["run_id", "evaluator", "metric"], keep="last")
    df = pd.concat([ok, df[df["status"] != "ok"]], ignore_index=True)
    df["column"] = df["evaluator"].astype(str) + "_" + df["metric"].astype(str)
    for k, fill in (("backbone", "-"), ("preset", "-"), ("epochs", 0), ("train_hash", "-")):
        df[k] = df[k].fillna(fill)
    df["epochs"] = df["epochs"].astype(int)
    return df


def _run_status(status: pd.Series) -> str:
    """A run is ok when it has ok rows; otherwise the status of its last row."""
    return "ok" if (status == "ok").any() else str(status.iloc[-1])


def check_evaluator_versions(df: pd.DataFrame, what: str = "leaderboard") -> None:
    """Refuse (ConfigError) rows of one evaluator written by two of its versions: their numbers
    are not comparable. Rows without a version (schema < 3) mix with any."""
    if "evaluator_version" not in df.columns or df.empty:
        return
    known = df[df["evaluator_version"].notna()]
    for ev, g in known.groupby("evaluator", sort=True):
        versions = sorted(g["evaluator_version"].astype(str).unique())
        if len(versions) > 1:
            raise ConfigError(
                f"{what}: rows of evaluator {ev!r} come from versions {', '.join(versions)}; "
                f"their numbers are not comparable: re-evaluate the older checkpoints, or keep one version's rows"
            )


def aggregate(df: pd.DataFrame) -> pd.DataFrame:
    """Wide table: one row per training configuration (KEY) with ``label``, ``n`` (ok seeds),
    ``status``, and for every metric column ``<col>_mean``, ``_std``, ``_n``, ``_ci95`` (the
    half-width of the 95% Student-t interval) and ``_mark`` (best / tied / ""), then
    ``train_seconds_mean``; sorted by the first headline metric that has a direction."""
    if df.empty:
        return pd.DataFrame(columns=["label"] + KEY + ["n", "status"])
    check_evaluator_versions(df)
    runs = df.groupby("run_id", sort=False)
    run_info = pd.DataFrame(
        {
            "status": runs["status"].agg(_run_status),
            **{k: runs[k].first() for k in KEY + ["seed", "train_seconds"]},
            "config": runs["config"].first(),
        }
    )
    groups = []
    for key, g in run_info.groupby(KEY, sort=False, dropna=False):
        statuses = g["status"].value_counts()
        n_ok = int(statuses.get("ok", 0))
        bad = {s: int(c) for s, c in statuses.items() if s != "ok"}
        status = "ok" if not bad else ", ".join(f"{s} {c}/{len(g)}" for s, c in sorted(bad.items()))
        cfg = next((c for c in g["config"] if isinstance(c, dict)), None)
        secs = pd.to_numeric(g.loc[g["status"] == "ok", "train_seconds"], errors="coerce")
        groups.append(
            {
                **dict(zip(KEY, key, strict=True)),
                "backbone": table_backbone(key[0], key[1], cfg),
                "_stored": str(key[1]),
                "label": reference_label(key[0], key[1], cfg) or config_label(key[0], cfg),
                "n": n_ok,
                "status": status,
                "train_seconds_mean": float(secs.mean()) if len(secs.dropna()) else float("nan"),
                "_runs": set(g.index[g["status"] == "ok"]),
            }
        )
    table = pd.DataFrame(groups)
    # two configurations that the label cannot tell apart get their hash appended, and rows of one
    # configuration stored under two backbone names (before and after it was named) that name
    shown = ["label", "backbone", "preset", "epochs"]
    dup = table.duplicated(shown, keep=False)
    table.loc[dup, "label"] = table.loc[dup, "label"] + " #" + table.loc[dup, "train_hash"].astype(str).str[:6]
    dup = table.duplicated(shown, keep=False)
    table.loc[dup, "label"] = table.loc[dup, "label"] + " (rows of " + table.loc[dup, "_stored"] + ")"

    ok = df[(df["status"] == "ok") & df["value"].notna()]
    per_run = ok.pivot_table(index="run_id", columns="column", values="value", aggfunc="last")
    cols = ordered_columns(ok)
    new_cols: dict[str, list] = {}  # built apart and joined once: per-class metrics make hundreds of columns
    group_runs = [per_run.reindex(sorted(runs_ok)) for runs_ok in table["_runs"]]  # once, not once per column
    for col, _ev, _m, info in cols:
        stats: dict[str, list[float]] = {"mean": [], "std": [], "n": [], "ci95": []}
        for sub in group_runs:
            v = sub[col].dropna() if col in per_run.columns else pd.Series([], dtype=float)
            v = v[v.map(lambda x: math.isfinite(x))]
            n = len(v)
            sd = float(v.std(ddof=1)) if n >= 2 else float("nan")
            stats["mean"].append(float(v.mean()) if n else float("nan"))
            stats["std"].append(sd)
            stats["n"].append(n)
            stats["ci95"].append(t_half_width(sd, n))
        for s, vals in stats.items():
            new_cols[f"{col}_{s}"] = vals
        new_cols[f"{col}_mark"] = marks_within_backbone(
            pd.DataFrame({f"{col}_{s}": v for s, v in stats.items()}), col, info.higher_is_better, table
        )
    table = pd.concat([table, pd.DataFrame(new_cols, index=table.index)], axis=1).drop(columns="_runs")
    metric_cols = [f"{c}_{s}" for c, *_ in cols for s in ("mean", "std", "n", "ci95", "mark")]
    table = table[["label"] + KEY + ["n", "status"] + metric_cols + ["train_seconds_mean"]]
    sort = next(((c, info) for c, _ev, _m, info in cols if info.headline and info.higher_is_better is not None), None)
    if sort is None:
        sort = next(((c, info) for c, _ev, _m, info in cols if info.higher_is_better is not None), None)
    if sort is not None:
        table = table.sort_values(
            f"{sort[0]}_mean", ascending=not sort[1].higher_is_better, kind="stable", na_position="last"
        )
    table = add_gains(table.reset_index(drop=True), cols)
    table.attrs["sort"] = sort[0] if sort else None
    return table


def mark_ties(table: pd.DataFrame, col: str, higher_is_better: bool | None) -> list[str]:
    """ "best" for the best row among those with n >= 2, "tied" for each other n >= 2 row that
    Welch's t-test (two-sided, ALPHA) cannot tell apart from it, "" otherwise (n = 1: always "")."""
    marks = [""] * len(table)
    if higher_is_better is None:
        return marks
    mean, std, n = table[f"{col}_mean"], table[f"{col}_std"], table[f"{col}_n"]
    cand = [i for i in range(len(table)) if n.iloc[i] >= 2 and math.isfinite(mean.iloc[i])]
    if not cand:
        return marks
    best = max(cand, key=lambda i: mean.iloc[i]) if higher_is_better else min(cand, key=lambda i: mean.iloc[i])
    marks[best] = "best"
    for i in cand:
        if (
            i != best
            and welch_p(mean.iloc[best], std.iloc[best], int(n.iloc[best]), mean.iloc[i], std.iloc[i], int(n.iloc[i]))
            >= ALPHA
        ):
            marks[i] = "tied"
    return marks


def marks_within_backbone(
    stats: pd.DataFrame, col: str, higher_is_better: bool | None, table: pd.DataFrame
) -> list[str]:
    """:func:`mark_ties` among the rows of each backbone apart (a ViT's rows are not ranked against
    a CNN's); deterministic references (pixels) are never marked."""
    marks = [""] * len(stats)
    groups: dict[str, list[int]] = {}
    for i, (bb, m) in enumerate(zip(table["backbone"], table["method"], strict=True)):
        if m not in DETERMINISTIC:
            groups.setdefault(str(bb), []).append(i)
    for idx in groups.values():
        for i, mark in zip(idx, mark_ties(stats.iloc[idx].reset_index(drop=True), col, higher_is_better), strict=True):
            marks[i] = mark
    return marks


def reference_label(method: str, backbone: str, config: dict | None) -> str | None:
    """The label of a random-init row whose BN statistics were never recalibrated (rows written
    before #34 on a backbone with BN layers); None for every other row."""
    kwargs = (config or {}).get("method_kwargs") or {}
    if method == "random-init" and backbone in BN_BACKBONES and "bn_stats" not in kwargs:
        return "random-init [BN stats at init]"
    return None


def add_gains(table: pd.DataFrame, cols: list[tuple[str, str, str, Metric]]) -> pd.DataFrame:
    """``gain_<col>_mean`` / ``_ci95`` / ``_p`` for every headline metric with a direction: a
    row's mean minus that of the random-init row of the same backbone and preset (the BN-recalibrated
    one where both exist), the half-width of the 95% Welch interval of the difference and Welch's
    two-sided p. NaN for the references themselves and where the backbone has no random-init row."""
    refs = table.loc[table["method"] == "random-init", ["label", "backbone", "preset"]]
    refs = refs.assign(_legacy=refs["label"].str.contains("BN stats at init", regex=False)).sort_values(
        "_legacy", kind="stable"
    )
    ref_of: dict[tuple, object] = {}
    for i, r in refs.iterrows():
        ref_of.setdefault((r["backbone"], r["preset"]), i)
    new: dict[str, list[float]] = {}
    for col, _ev, _m, info in cols:
        if not info.headline or info.higher_is_better is None or f"{col}_mean" not in table:
            continue
        out: dict[str, list[float]] = {"mean": [], "ci95": [], "p": []}
        for _, r in table.iterrows():
            j = ref_of.get((r["backbone"], r["preset"]))
            if j is None or r["method"] in BASELINES:
                d = {"mean": float("nan"), "ci95": float("nan"), "p": float("nan")}
            else:
                ref = table.loc[j]
                d = welch_difference(
                    (r[f"{col}_mean"], r[f"{col}_std"], int(r[f"{col}_n"])),
                    (ref[f"{col}_mean"], ref[f"{col}_std"], int(ref[f"{col}_n"])),
                )
            for k in out:
                out[k].append(d[k])
        for k, v in out.items():
            new[f"gain_{col}_{k}"] = v
    return pd.concat([table, pd.DataFrame(new, index=table.index)], axis=1) if new else table


def welch_difference(a: tuple[float, float, int], b: tuple[float, float, int]) -> dict[str, float]:
    """mean_a - mean_b from (mean, std, n) summaries, the half-width of its 95% Welch interval
    (Welch-Satterthwaite degrees of freedom) and Welch's two-sided p; NaN interval and p when a side
    has n < 2."""
    from scipy import stats as st

    (ma, sa, na), (mb, sb, nb) = a, b
    diff = float(ma - mb)
    if na < 2 or nb < 2 or not (math.isfinite(sa) and math.isfinite(sb)):
        return {"mean": diff, "ci95": float("nan"), "p": float("nan")}
    va, vb = sa * sa / na, sb * sb / nb
    se = math.sqrt(va + vb)
    if se == 0:
        return {"mean": diff, "ci95": 0.0, "p": 1.0 if diff == 0 else 0.0}
    df = (va + vb) ** 2 / (va * va / (na - 1) + vb * vb / (nb - 1))
    return {"mean": diff, "ci95": float(st.t.ppf(0.5 + CONFIDENCE / 2, df) * se), "p": welch_p(ma, sa, na, mb, sb, nb)}


# -- Markdown ---------------------------------------------------------------------------------------
def format_cell(mean: float, ci95: float, n: int, info: Metric, mark: str = "") -> str:
    if n == 0 or not math.isfinite(mean):
        return "—"
    if info.categorical:
        return str(info.categorical.get(int(round(mean)), f"{mean:.2f}"))
    text = f"{mean:.2f}" if n < 2 or not math.isfinite(ci95) else f"{mean:.2f} ± {ci95:.2f}"
    return f"**{text}**" if mark in ("best", "tied") else text


def _gain_info(df: pd.DataFrame, table: pd.DataFrame) -> tuple[str, Metric] | None:
    """(column, declaration) of the metric whose gain over random-init the Markdown shows: the sort
    metric, when the table has its gains."""
    sort = table.attrs.get("sort")
    if not sort or f"gain_{sort}_mean" not in table or df.empty:
        return None
    info = next((i for c, _e, _m, i in ordered_columns(df) if c == sort), None)
    return (sort, info) if info is not None else None


def format_gain(mean: float, ci95: float) -> str:
    if not math.isfinite(mean):
        return "—"
    return f"{mean:+.2f}" if not math.isfinite(ci95) else f"{mean:+.2f} ± {ci95:.2f}"


def _options_text(df: pd.DataFrame, evaluator: str) -> str | None:
    names = _legend_options(evaluator)
    sub = df[(df["evaluator"] == evaluator) & (df["status"] == "ok")]
    if sub.empty:
        return None
    seen = []
    for opts in sub["eval_options"] if "eval_options" in sub.columns else []:
        if not isinstance(opts, dict) or not opts:
            continue
        shown = {k: opts[k] for k in names if k in opts} if names else {}
        text = ", ".join(f"{k}={_fmt_value(v)}" for k, v in shown.items())
        if text and text not in seen:
            seen.append(text)
    if not seen:
        return None
    return seen[0] if len(seen) == 1 else " | ".join(seen) + " (differs between rows: not comparable)"


def legend(
    df: pd.DataFrame, table: pd.DataFrame, headline: list[tuple[str, str, str, Metric]], command: str
) -> list[str]:
    sort = table.attrs.get("sort")
    sort_info = next((info for c, _e, _m, info in ordered_columns(df) if c == sort), None)
    lines = [
        f"Generated by `{command}` from the result rows under the runs directory; do not edit by hand.",
        "",
        "A row is one training configuration (every training key except the seed); runs that differ only "
        "in the seed are aggregated, n = number of seeds. A label's brackets list what differs from the "
        "method's defaults. n = 1: the value of the one seed, no uncertainty shown. n ≥ 2: mean ± "
        "half-width of the 95% confidence interval of the mean (Student t, n − 1 degrees of freedom). "
        f"**Bold**: within each backbone, the best row of the column and every row of the same backbone that a "
        f"two-sided Welch t-test at {ALPHA:.0%} cannot tell apart from it (a ViT's rows are not ranked against a "
        "CNN's); only rows with n ≥ 2 take part, so a one-seed row is never marked (no correction for multiple "
        "comparisons). `pixels` does not depend on the seed: n = —, no interval, never marked."
        + (
            f" Sorted by {sort_info.label} ({'higher' if sort_info.higher_is_better else 'lower'} is better)."
            if sort_info
            else ""
        ),
        "",
    ]
    for _c, ev, _m, info in headline:
        unit = f"{info.unit}, " if info.unit else ""
        direction = {True: "higher is better", False: "lower is better", None: "no better direction"}[
            info.higher_is_better
        ]
        lines.append(f"- **{info.label}** ({unit}{direction}; `{ev}`): {info.description}")
    evs = list(dict.fromkeys(ev for _c, ev, _m, _i in headline))
    options = [(ev, _options_text(df, ev)) for ev in evs]
    opts = [f"`{ev}`: {t}" for ev, t in options if t]
    if opts:
        lines += ["", "Evaluator options used: " + "; ".join(opts) + " (every option is in each result row)."]
    lines += [
        "",
        "`pixels` and `random-init` are reference rows: an SSL row means something only next to "
        "them (model evaluators have no value for `pixels`). `random-init` is the untrained backbone with its "
        "BN statistics re-estimated on the training images (a row labelled `[BN stats at init]` was not "
        "recalibrated). Gain over random-init: the row's mean minus that of the same backbone's random-init "
        "row, ± the half-width of the 95% Welch interval of the difference. A status other than ok (a diverged "
        "or failed run) replaces the numbers when no seed of the row succeeded. The CSV has every metric with its "
        "mean, std, n, 95% half-width and tie mark.",
    ]
    return lines


def to_markdown(table: pd.DataFrame, dataset: str, command: str, df: pd.DataFrame | None = None) -> str:
    df = df if df is not None else pd.DataFrame(columns=["evaluator", "metric", "status", "eval_options"])
    cols = ordered_columns(df) if not df.empty else []
    headline = [c for c in cols if c[3].headline] or cols  # only undeclared metrics: show them all
    show_status = (table["status"] != "ok").any() if "status" in table else False
    gain = _gain_info(df, table)
    head = (
        ["method", "backbone", "preset", "epochs", "n"]
        + (["status"] if show_status else [])
        + [
            f"{info.label} {info.unit}".strip() if info.unit not in ("", "%") else info.label
            for _c, _e, _m, info in headline
        ]
        + ([f"gain over random-init ({gain[1].label})"] if gain else [])
        + ["train s"]
    )
    lines = (
        [f"# Leaderboard: {dataset}", ""]
        + legend(df, table, headline, command)
        + ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    )
    for _, r in table.iterrows():
        name = f"_{r.label}_" if r.method in BASELINES else str(r.label)
        fixed = r.method in DETERMINISTIC
        cells = [name, str(r.backbone), str(r.preset), str(int(r.epochs)), "—" if fixed else str(int(r.n))]
        if show_status:
            cells.append(str(r.status))
        for c, _e, _m, info in headline:
            if int(r.n) == 0:
                cells.append(str(r.status))
                continue
            n = min(int(r[f"{c}_n"]), 1) if fixed else int(r[f"{c}_n"])
            cells.append(format_cell(r[f"{c}_mean"], r[f"{c}_ci95"], n, info, r[f"{c}_mark"]))
        if gain:
            cells.append(format_gain(r[f"gain_{gain[0]}_mean"], r[f"gain_{gain[0]}_ci95"]))
        ts = r.get("train_seconds_mean")
        cells.append("—" if ts is None or pd.isna(ts) else f"{ts:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _check_dataset_names(df: pd.DataFrame, runs_dir: Path, datasets: list[str] | None) -> None:
    """A row's dataset becomes the file name of its leaderboard: a name that is not a plain file
    stem (``../x``, an absolute path, a separator) is refused before anything is written."""
    from .names import safe_name

    for ds, run in zip(df["dataset"], df["run_id"], strict=True):
        if ds is None or (isinstance(ds, float) and math.isnan(ds)) or (datasets and ds not in datasets):
            continue
        safe_name(ds, f"leaderboard (nothing written): the dataset of a result row under {runs_dir} (run {run!r})")


def write_leaderboards(
    runs_dir: Path, out_dir: Path, datasets: list[str] | None = None, command: str = "ssl-bench leaderboard"
) -> list[Path]:
    df = load_frame(Path(runs_dir))
    written: list[Path] = []
    if df.empty:
        return written
    _check_dataset_names(df, Path(runs_dir), datasets)
    for ds in sorted(df["dataset"].dropna().unique()):
        if datasets and ds not in datasets:
            continue
        sub = df[df["dataset"] == ds]
        table = aggregate(sub)
        out_dir.mkdir(parents=True, exist_ok=True)
        csv_path, md_path = out_dir / f"{ds}.csv", out_dir / f"{ds}.md"
        atomic_write_text(csv_path, table.to_csv(index=False, float_format="%.4f"))
        atomic_write_text(md_path, to_markdown(table, ds, command, sub))
        written += [csv_path, md_path]
    return written


# -- compare ----------------------------------------------------------------------------------------
def _labels(df: pd.DataFrame) -> dict[str, str]:
    """{train_hash: row label} of the configurations in ``df``."""
    out = {}
    for h, g in df.groupby("train_hash", sort=False):
        cfg = next((c for c in g["config"] if isinstance(c, dict)), None)
        out[h] = config_label(str(g["method"].iloc[0]), cfg)
    return out


def _select(df: pd.DataFrame, spec: str) -> pd.DataFrame:
    """Rows of ``spec``, tried in turn: a method name, a leaderboard row label
    (``simclr [temperature=0.5]``), a prefix (>= 4 characters) of a configuration's ``train_hash``
    (the CSV's column), a run-id prefix."""
    if not spec.strip():
        raise ConfigError(
            "compare: an empty name selects nothing; name a method, row label, train hash or run-id prefix"
        )
    ok = df[(df["status"] == "ok") & df["value"].notna()]
    sel = ok[ok["method"] == spec]
    if sel.empty:
        labels = _labels(ok)
        sel = ok[ok["train_hash"].isin([h for h, lab in labels.items() if lab == spec])]
    if sel.empty and len(spec) >= 4:
        sel = ok[ok["train_hash"].astype(str).str.startswith(spec)]
    if sel.empty:
        sel = ok[ok["run_id"].astype(str).str.startswith(spec)]
    if sel.empty:
        raise ConfigError(
            f"compare: no result rows for {spec!r} (not a method, row label, train hash or run-id prefix)"
        )
    return sel


def _eval_settings(sel: pd.DataFrame) -> dict[str, set[str]]:
    """{evaluator: set of its option sets (JSON)} plus the evaluation subsets under "eval subsets"."""
    out: dict[str, set[str]] = {}
    for ev, opts in zip(sel["evaluator"], sel["eval_options"], strict=True):
        out.setdefault(ev, set()).add(json.dumps(opts or {}, sort_keys=True, default=str))
    subsets = {
        json.dumps([(c or {}).get("eval_train_subset"), (c or {}).get("eval_test_subset")])
        for c in sel["config"]
        if isinstance(c, dict)
    }
    if subsets:
        out["eval subsets"] = subsets
    return out


def compare(df: pd.DataFrame, a: str, b: str) -> dict:
    """Seed-paired comparison of A and B (method names or run-id prefixes): for every metric both
    have, the mean difference A - B over the seeds they share, its 95% Student-t interval and the
    paired t-test p-value. Refuses (ConfigError) runs of different datasets or evaluator settings,
    and a side that holds several configurations for one seed."""
    sides = {}
    for name in (a, b):
        sel = _select(df, name)
        per_seed = sel.groupby("seed")["train_hash"].nunique()
        if (per_seed > 1).any():
            labels = sorted(f"{lab!r} (train hash {h[:8]})" for h, lab in _labels(sel).items())
            raise ConfigError(
                f"compare: {name!r} holds {int(per_seed.max())} configurations for one seed; "
                f"name one by its row label or train hash: {'; '.join(labels)}"
            )
        sides[name] = sel
    check_evaluator_versions(pd.concat([sides[a], sides[b]]), "compare")
    da, db = (sorted(sides[x]["dataset"].unique()) for x in (a, b))
    if da != db:
        raise ConfigError(f"compare: different datasets ({a}: {', '.join(da)}; {b}: {', '.join(db)})")
    sa, sb = _eval_settings(sides[a]), _eval_settings(sides[b])
    for ev in sorted(set(sa) & set(sb)):
        if len(sa[ev]) > 1 or len(sb[ev]) > 1 or sa[ev] != sb[ev]:
            raise ConfigError(
                f"compare: different {ev if ev == 'eval subsets' else 'evaluator settings of ' + ev} "
                f"({a}: {' | '.join(sorted(sa[ev]))}; {b}: {' | '.join(sorted(sb[ev]))})"
            )
    pa = sides[a].pivot_table(index="seed", columns="column", values="value", aggfunc="last")
    pb = sides[b].pivot_table(index="seed", columns="column", values="value", aggfunc="last")
    seeds = sorted(set(pa.index) & set(pb.index))
    if not seeds:
        raise ConfigError(f"compare: {a} (seeds {sorted(pa.index)}) and {b} (seeds {sorted(pb.index)}) share no seed")
    from .stats import paired_difference

    metrics = []
    both = pd.concat([sides[a], sides[b]])
    for col, ev, m, info in ordered_columns(both):
        if col not in pa.columns or col not in pb.columns:
            continue
        x, y = pa.loc[seeds, col], pb.loc[seeds, col]
        keep = x.notna() & y.notna() & x.map(math.isfinite) & y.map(math.isfinite)
        if not keep.any():
            continue
        res = paired_difference(x[keep].to_numpy(), y[keep].to_numpy())
        metrics.append(
            {
                "column": col,
                "evaluator": ev,
                "metric": m,
                "label": info.label,
                "unit": info.unit,
                "higher_is_better": info.higher_is_better,
                "headline": info.headline,
                "a_mean": float(x[keep].mean()),
                "b_mean": float(y[keep].mean()),
                "seeds": [int(s) for s in x[keep].index],
                **res,
            }
        )
    return {
        "a": a,
        "b": b,
        "dataset": da[0],
        "seeds": [int(s) for s in seeds],
        "confidence": 0.95,
        "test": "paired t-test (two-sided) over the shared seeds; interval: Student t",
        "metrics": metrics,
    }


def format_compare(res: dict, all_metrics: bool = False) -> str:
    rows = [m for m in res["metrics"] if all_metrics or m["headline"]] or res["metrics"]
    head = ["metric", res["a"], res["b"], "diff (A - B)", "95% CI", "p", "n"]
    lines = [
        f"{res['a']} vs {res['b']} on {res['dataset']}, seeds {', '.join(map(str, res['seeds']))} "
        "(paired t-test; n = 1: no interval)",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for m in rows:
        ci = "—" if m["ci_low"] is None else f"[{m['ci_low']:+.2f}, {m['ci_high']:+.2f}]"
        p = "—" if m["p_value"] is None else f"{m['p_value']:.3g}"
        lines.append(
            f"| {m['label']} | {m['a_mean']:.2f} | {m['b_mean']:.2f} | {m['diff']:+.2f} | {ci} | {p} | {m['n']} |"
        )
    return "\n".join(lines)


README_START, README_END = "<!-- leaderboard:{} -->", "<!-- /leaderboard -->"


def readme_blocks(readme: Path) -> dict[str, tuple[int, int]]:
    """{dataset: (end of its opening marker, start of its closing marker)} of the blocks
    ``<!-- leaderboard:DATASET -->`` ... ``<!-- /leaderboard -->`` in ``readme``. Checked before
    anything is written: a README that is missing, not UTF-8 text or read-only, and a marker that
    is misspelt, unclosed, stray or repeated, are one-line ConfigErrors."""
    import os
    import re

    readme = Path(readme)
    if readme.is_dir() or not readme.exists():
        raise ConfigError(f"--readme {readme} {'is a directory' if readme.is_dir() else 'does not exist'}")
    if not os.access(readme, os.W_OK):
        raise ConfigError(f"--readme {readme} is read-only: its leaderboard block could not be refreshed")
    try:
        text = readme.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"--readme {readme} is not UTF-8 text (byte {exc.start})") from None
    blocks: dict[str, tuple[int, int]] = {}
    open_name, open_at = None, 0
    for m in re.finditer(r"<!--\s*(?:/\s*leaderboard|leaderboard\s*:).*?-->", text, flags=re.S):
        line = text.count("\n", 0, m.start()) + 1
        opening = re.fullmatch(r"<!-- leaderboard:([\w.+-]+) -->", m.group())
        if opening is None and m.group() != README_END:
            raise ConfigError(
                f"{readme} line {line}: {m.group()!r} is a misspelt marker; a block is "
                f"{README_START.format('DATASET')} ... {README_END}"
            )
        if open_name is not None and opening is not None:
            raise ConfigError(f"{readme}: the block of {open_name!r} is not closed by {README_END} before line {line}")
        if opening is not None:
            open_name, open_at = opening.group(1), m.end()
            if open_name in blocks:
                raise ConfigError(f"{readme} line {line}: a second block for {open_name!r}")
        elif open_name is None:
            raise ConfigError(f"{readme} line {line}: {README_END} closes no block")
        else:
            blocks[open_name], open_name = (open_at, m.start()), None
    if open_name is not None:
        raise ConfigError(f"{readme}: the block of {open_name!r} is never closed by {README_END}")
    return blocks


def update_readme(readme: Path, dataset: str, table_md: str) -> bool:
    """Replace the block between ``<!-- leaderboard:DATASET -->`` and ``<!-- /leaderboard -->``;
    False when the README has no block for ``dataset``, a ConfigError when its markers are broken
    (:func:`readme_blocks`)."""
    readme = Path(readme)
    blocks = readme_blocks(readme)
    if dataset not in blocks:
        return False
    text = readme.read_text(encoding="utf-8")
    i, j = blocks[dataset]
    body = "\n".join(line for line in table_md.splitlines() if not line.startswith("# "))
    atomic_write_text(readme, text[:i] + "\n" + body.strip() + "\n" + text[j:])
    return True


def refresh_readme(
    readme: Path, tables: list[Path], named: bool, render: Callable[[Path], str] | None = None
) -> list[Path]:
    """Refresh the blocks of ``readme`` from the leaderboard Markdown files ``tables``
    (``<dataset>.md``), each rendered by ``render`` (default: the file's text). A dataset the user
    ``named`` (``--dataset``) must have its block, and so must at least one of the others; the ones
    without a block are named in a warning."""
    from .errors import warn

    blocks = readme_blocks(readme)
    missing = [md.stem for md in tables if md.stem not in blocks]
    if missing and (named or len(missing) == len(tables)):
        raise ConfigError(
            f"{readme} has no {README_START.format(missing[0])} ... {README_END} block "
            f"(its blocks: {', '.join(blocks) or 'none'}); nothing in it was changed"
        )
    if missing:
        warn(f"{readme} has no block for {', '.join(missing)}: those tables were not copied into it")
    render = render or (lambda md: md.read_text())
    refreshed = [update_readme(readme, md.stem, render(md)) for md in tables if md.stem in blocks]
    return [Path(readme)] if any(refreshed) else []

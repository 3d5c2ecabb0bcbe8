"""Glue for the one-way data flow: checkpoint -> embeddings (cached) -> evaluators -> rows."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from . import precision as precision_mod
from . import provenance
from .backbones import build_backbone, default_backbone
from .config import RunConfig
from .datasets import Data
from .method import Method
from .embeddings import Embeddings, checkpoint_embeddings, embed_data, eval_split, pixel_embeddings
from .registry import EVALUATORS
from .results import append_rows, make_rows
from .trainer import backbone_choice, load_data, resolve_device, seed_everything, train


def eval_options(preset: str, *kwargs: dict | None) -> dict[str, dict]:
    """Evaluator options: the budgets each evaluator declares for ``preset``
    (``Evaluator.preset_options``; ``quick`` uses the defaults), then each ``kwargs`` in turn
    ({evaluator: {option: value}}), which win."""
    out: dict[str, dict] = {}
    for name in EVALUATORS.names():
        budget = getattr(EVALUATORS.get(name), "preset_options", {}).get(preset)
        if budget:
            out[name] = dict(budget)
    for kw in kwargs:
        for ev, opts in (kw or {}).items():
            out.setdefault(ev, {}).update(opts)
    return out


def run_evaluators(emb: Embeddings, names: list[str], eval_kwargs: dict | None = None, model=None,
                   data: Data | None = None, device: torch.device | None = None, artifact_dir: Path | None = None,
                   artifact_prefix: str = "", precision: str = "fp32") -> dict[str, tuple[dict, float]]:
    """{evaluator: (metrics, seconds)} for each name; evaluator options from ``eval_kwargs``.

    Model evaluators (``needs_model``) get ``model`` (a Method in eval mode), the evaluation
    ``data`` and ``device``; without a model (the ``pixels`` baseline, bare embeddings) they are
    skipped and give no entry; they run the model under ``precision`` (resolved, see
    :mod:`ssl_bench.precision`: the one the model was trained with). Evaluators that write files
    write them under ``artifact_dir``.
    """
    out = {}
    for name in names:
        ev = EVALUATORS.get(name)(**(eval_kwargs or {}).get(name, {}))
        ev.artifact_dir, ev.artifact_prefix, ev.precision = artifact_dir, artifact_prefix, precision
        if ev.needs_model and model is None:
            continue
        t0 = time.perf_counter()
        if ev.needs_model:
            metrics = ev.run_model(model, data, device or torch.device("cpu"))
        else:
            metrics = ev(emb)
        out[name] = (metrics, time.perf_counter() - t0)
    return out


def evaluation_data_config(cfg: RunConfig, dataset: str | None = None, data_root: str | None = None) -> RunConfig:
    """The config that says which data a checkpoint is evaluated on. A checkpoint's metadata is
    data from a file, not an instruction: its dataset is used only when it names a registered
    dataset (or the caller names one), and its data root is never used, so a run bundle cannot
    point ssl-bench at a folder of its choosing. The root comes from ``data_root``, else
    ``$SSL_BENCH_DATA``, else the dataset's default location."""
    from .registry import DATASETS

    name = dataset or cfg.dataset
    if not isinstance(name, str) or name not in DATASETS.names():
        DATASETS.get(str(name))  # raises the one-line "unknown dataset ... (have: ...)" error
    return dataclasses.replace(cfg, dataset=name, data_root=data_root)


def evaluate_checkpoint(ckpt: Path, evaluators: list[str] | None = None, eval_kwargs: dict | None = None,
                        device: str = "auto", data: Data | None = None, results: Path | None = None,
                        dataset: str | None = None, data_root: str | None = None) -> list[dict]:
    """Evaluate a checkpoint and append the rows to its run's ``results.jsonl``. The data is
    ``data`` if given, else ``dataset`` (default: the checkpoint's, validated against the registry)
    under ``data_root`` (never the checkpoint's recorded root)."""
    ckpt = Path(ckpt)
    dev = resolve_device(device)
    from .checkpoint import read_encoder

    _, meta = read_encoder(ckpt)  # fail fast, with a clear message, on a damaged file
    cfg = RunConfig.from_dict(meta["config"]).with_preset()
    names = EVALUATORS.resolve(evaluators or cfg.evaluators)
    full = data if data is not None else load_data(evaluation_data_config(cfg, dataset, data_root))
    ev_data = eval_split(cfg, full)
    emb, cfg, meta, _cached, method = checkpoint_embeddings(ckpt, ev_data, dev)
    model = method if any(EVALUATORS.get(n).needs_model for n in names) else None
    rows = []
    options = eval_options(cfg.preset, cfg.eval_kwargs, eval_kwargs)
    results_ev = run_evaluators(emb, names, options, model=model, data=ev_data,
                                device=dev, artifact_dir=ckpt.parent / "artifacts",
                                artifact_prefix=f"{ckpt.stem}-",
                                precision=precision_mod.resolve_precision(cfg.precision, dev))
    for name, (metrics, secs) in results_ev.items():
        rows += make_rows(metrics, evaluator=name, run_id=meta["run_id"], method=cfg.method, dataset=cfg.dataset,
                          backbone=meta["backbone"], preset=cfg.preset, epochs=int(meta["epoch"]), seed=cfg.seed,
                          config_hash=meta["config_hash"], config=meta["config"], device=provenance.hardware(dev),
                          train_seconds=meta.get("train_seconds"), eval_seconds=secs, checkpoint=str(ckpt),
                          eval_options=EVALUATORS.get(name).resolved_options(options.get(name)), train_meta=meta)
    append_rows(results or ckpt.parent.parent / "results.jsonl", rows)
    return rows


def baseline_backbones(cfg: RunConfig, kind: str, methods: list[str] | None = None) -> list[tuple[str, dict]]:
    """The backbones random-init is measured with: the data's default (or the configured one) plus
    every other backbone a method of the sweep trains (e.g. the ViT of ijepa/mae), in order."""
    choices = [backbone_choice(cfg, kind) if cfg.backbone not in ("auto", "") else
               (default_backbone(kind), dict(cfg.backbone_kwargs))]
    for m in methods or []:
        c = backbone_choice(RunConfig(**{**cfg.to_dict(), "method": m}), kind)
        if c not in choices:
            choices.append(c)
    return choices


def evaluate_baselines(cfg: RunConfig, out: Path, data: Data, evaluators: list[str],
                       methods: list[str] | None = None) -> list[dict]:
    """The reference rows: ``pixels`` (raw input) and ``random-init`` (untrained backbone), the
    latter once per backbone the sweep's ``methods`` train, so every SSL row has its own."""
    cfg = cfg.with_preset()
    evaluators = EVALUATORS.resolve(evaluators)
    dev = resolve_device(cfg.device)
    ev_data = eval_split(cfg, data)
    prec = precision_mod.resolve_precision(cfg.precision, dev)
    rows = []
    jobs = [("pixels", None, None)] + [("random-init", bb, kw) for bb, kw in baseline_backbones(cfg, data.kind, methods)]
    for name, bb, bb_kwargs in jobs:
        model = None  # pixels: no model, so model evaluators (lidar, reconstruction) are skipped
        if name == "pixels":
            emb, backbone = pixel_embeddings(ev_data), "-"
        else:
            seed_everything(cfg.seed)  # the same initial weights the SSL methods start from
            net = build_backbone(bb, data.input_shape, data.kind, **bb_kwargs).to(dev).eval()
            net = precision_mod.model_to_layout(net, precision_mod.wants_channels_last(data.kind, data.input_shape))
            emb = embed_data(net, ev_data, dev, source="random-init", precision=prec)
            backbone = bb
            model = Method(net).to(dev).eval()  # encode = the untrained backbone
        bcfg = RunConfig(**{**cfg.to_dict(), "method": name})
        bb_tag = "" if backbone == "-" else "-" + backbone.replace(":", "-").replace("/", "-")
        run_id = f"{cfg.dataset}-{name}{bb_tag}-{cfg.preset}-s{cfg.seed}"
        options = eval_options(cfg.preset, cfg.eval_kwargs)
        results_ev = run_evaluators(emb, evaluators, options, model=model, data=ev_data, device=dev,
                                    artifact_dir=Path(out) / run_id / "artifacts", precision=prec)
        for ev, (metrics, secs) in results_ev.items():
            rows += make_rows(metrics, evaluator=ev, run_id=run_id, method=name, dataset=cfg.dataset,
                              backbone=backbone, preset=cfg.preset, epochs=0, seed=cfg.seed,
                              config_hash=bcfg.hash(), config=bcfg.to_dict(), device=provenance.hardware(dev),
                              train_seconds=0.0, eval_seconds=secs,
                              eval_options=EVALUATORS.get(ev).resolved_options(options.get(ev)))
        append_rows(Path(out) / run_id / "results.jsonl", [r for r in rows if r["run_id"] == run_id])
    return rows


def run_sweep(methods: list[str], base: RunConfig, seeds: list[int], out: Path, baselines: bool = True,
              log=None) -> list[dict]:
    """Train (or resume) and evaluate every method x seed, plus the baselines per seed."""
    out = Path(out)
    log = log or (lambda msg: print(msg, flush=True))
    data = load_data(base)
    evaluators = EVALUATORS.resolve(base.evaluators)
    rows: list[dict] = []
    for seed in seeds:
        if baselines:
            cfg = RunConfig(**{**base.to_dict(), "seed": seed})
            log(f"[baselines] {base.dataset} seed {seed}: pixels, random-init")
            rows += evaluate_baselines(cfg, out, data, evaluators, methods)
        for m in methods:
            cfg = RunConfig(**{**base.to_dict(), "method": m, "seed": seed})
            t0 = time.perf_counter()
            res = train(cfg, out, resume=True, data=data)
            what = "trained" if res.resumed_from < res.epochs else "already trained"
            new = evaluate_checkpoint(res.checkpoint, evaluators, device=cfg.device, data=data)
            summary = ", ".join(f"{r['evaluator']}.{r['metric']}={r['value']:.2f}" for r in new)
            log(f"[{m} seed {seed}] {what} in {res.train_seconds:.0f}s; {summary} "
                f"({time.perf_counter() - t0:.0f}s with eval)")
            rows += new
    return rows

"""``ssl-bench eval --encoder SPEC`` and ``ssl_bench.evaluate(model, ...)``: an encoder trained
anywhere (:mod:`ssl_bench.external`) judged by the same evaluators, on the same evaluation split,
with rows on the same table.

The flow is the harness's: resolve the encoder once -> embed (cached) -> evaluators -> rows. The
rows go to ``<out>/<run_id>/results.jsonl`` like a run's, so ``leaderboard``, ``compare`` and
``report`` take them with the rest. Their method is ``external:<spec>`` and their config's
``method_kwargs`` hold ``weights=<file name>`` (the label reads ``external:timm:resnet18
[weights=r18.pth]``); the config also holds every adaptation choice and the digests of the
weights (``external``), so rows of other weights have another ``train_hash`` and never merge.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import provenance
from .build import load_data, resolve_device, seed_everything
from .checkpoint import tensors_digest
from .config import RunConfig
from .data import Data
from .embeddings import cache_key, cached_embeddings, eval_split
from .errors import ConfigError
from .external import (
    AdaptedEncoder,
    Built,
    IMAGENET_MEAN,
    IMAGENET_STD,
    first_conv_channels,
    load_strict,
    read_weights,
    resolve,
    sha256_file,
    strip_prefix,
)
from .kinds import DataKind
from .method import Method
from .registry import EVALUATORS
from .results import make_rows


@dataclasses.dataclass
class External:
    """A resolved external encoder: the Method the evaluators get, and what to record."""

    method: Method
    encoder: AdaptedEncoder
    label: str  # external:<spec>
    weights: str  # the label's weights=<...>
    record: dict[str, Any]  # provenance: spec, weights file + sha256, adaptation choices


def module_built(model: nn.Module) -> Built:
    """A :class:`Built` for a module given in Python (``ssl_bench.evaluate``): its timm-style
    ``pretrained_cfg`` if it has one, else ImageNet's normalisation at the data's own size."""
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    return Built(
        model,
        f"python:{type(model).__module__}.{type(model).__qualname__}",
        in_chans=first_conv_channels(model),
        mean=tuple(cfg.get("mean", IMAGENET_MEAN)),
        std=tuple(cfg.get("std", IMAGENET_STD)),
        norm_from="pretrained_cfg" if "mean" in cfg else "imagenet",
        weights_hint="as-given",
    )


def load_external(
    encoder: str | nn.Module,
    data: Data,
    weights: str | Path | None = None,
    prefix: str = "",
    input_size: int | None = None,
    layer: str = "",
    seed: int = 0,
    device: torch.device | None = None,
) -> External:
    """Build (seeded: a random init is reproducible), load the weights strictly, adapt the input."""
    if input_size is not None and not 1 <= input_size <= 4096:
        raise ConfigError(f"--input-size must be in [1, 4096], got {input_size}")
    if prefix and weights is None:
        raise ConfigError("--strip-prefix needs --weights FILE")
    # the weights are read first: a refused or mismatched file fails before anything is built
    state = strip_prefix(read_weights(weights), prefix, f"--weights {weights}") if weights is not None else None
    seed_everything(seed)
    built = resolve(encoder) if isinstance(encoder, str) else module_built(encoder)
    record: dict[str, Any] = {"spec": built.spec, "weights": None, "weights_sha256": None, "strip_prefix": prefix}
    name = built.weights_hint
    if weights is not None and state is not None:
        wp = Path(weights)
        dropped = load_strict(built.net, state, f"--weights {wp} into {built.spec}", built.head_prefixes)
        name = wp.name
        record.update(weights=wp.name, weights_sha256=sha256_file(wp), classifier_keys_ignored=dropped)
    image = data.kind == DataKind.IMAGE
    size = input_size or (built.input_size if image else None)
    chans = built.in_chans if image else None
    if image and (chans or data.input_shape[0]) == 1 and len(built.mean) == 3:  # a grey encoder, RGB statistics
        built.mean, built.std = (sum(built.mean) / 3,), (sum(built.std) / 3,)
        built.norm_from += " (grey: the mean of its 3 channels)"
    enc = AdaptedEncoder(built, chans, size, layer).eval()
    dev = device or torch.device("cpu")
    enc = enc.to(dev)
    record.update(
        state_sha256=tensors_digest(built.net.state_dict()),
        input_size=size if image else None,
        input_size_from="--input-size" if input_size else built.size_from,
        data_shape=list(data.input_shape),
        channels=chans,
        grey_to_rgb=bool(image and chans and data.input_shape[0] == 1 and chans != 1),
        mean=list(built.mean) if image else None,
        std=list(built.std) if image else None,
        normalization_from=built.norm_from if image else None,
        layer=layer or None,
        layer_pool=("mean over spatial positions (4-D) or tokens (3-D)" if layer else None),
        output="pooled output" if built.spec.startswith("hf:") and not layer else None,
    )
    with torch.no_grad():
        enc.out_dim = int(enc(torch.zeros(2, *data.input_shape, device=dev)).shape[1])
    record["out_dim"] = enc.out_dim
    method = Method(enc).eval()
    label = f"external:{built.spec}"
    return External(method, enc, label, name, record)


def external_config(ext: External, cfg: RunConfig) -> dict[str, Any]:
    """The row's ``config``: the evaluation's dataset, preset, seed and subsets, the weights in
    ``method_kwargs`` (the leaderboard label) and the encoder's record (the row identity)."""
    kw: dict[str, Any] = {"weights": ext.weights}
    if ext.record.get("layer"):
        kw["layer"] = ext.record["layer"]
    return {
        "method": ext.label,
        "dataset": cfg.dataset,
        "preset": cfg.preset,
        "seed": cfg.seed,
        "eval_train_subset": cfg.eval_train_subset,
        "eval_test_subset": cfg.eval_test_subset,
        "method_kwargs": kw,
        "external": ext.record,
    }


def evaluation_config(
    dataset: str, preset: str, seed: int, eval_train_subset: int | None, eval_test_subset: int | None
) -> RunConfig:
    """The RunConfig whose dataset, preset budgets and evaluation subsets an external encoder is judged with."""
    cfg = RunConfig(
        dataset=dataset,
        preset=preset,
        seed=seed,
        eval_train_subset=eval_train_subset,
        eval_test_subset=eval_test_subset,
    )
    return cfg.with_preset()


def evaluate_external(
    encoder: str | nn.Module,
    out: Path,
    *,
    dataset: str = "fashion-mnist",
    data_root: str | None = None,
    evaluators: list[str] | tuple[str, ...] | None = None,
    weights: str | Path | None = None,
    prefix: str = "",
    input_size: int | None = None,
    layer: str = "",
    preset: str = "quick",
    seed: int = 0,
    device: str = "auto",
    eval_train_subset: int | None = None,
    eval_test_subset: int | None = None,
    eval_kwargs: dict | None = None,
    data: Data | None = None,
    progress: bool = True,
) -> list[dict]:
    """Evaluate an external encoder on ``dataset`` and append its rows to
    ``<out>/<run_id>/results.jsonl``; returns the rows. Embeddings are cached under
    ``<out>/<run_id>/embeddings`` (key: the encoder's record, the data's fingerprint, the layer)."""
    from .pipeline import _check_writable, eval_options, evaluation_data_config, run_evaluators, save_rows

    cfg = evaluation_config(dataset, preset, seed, eval_train_subset, eval_test_subset)
    names = EVALUATORS.resolve(list(evaluators) if evaluators else cfg.evaluators)
    dev = resolve_device(device)
    full = data if data is not None else load_data(evaluation_data_config(cfg, dataset, data_root))
    # the encoder normalises its own input (its config's statistics), so the data hands it [0, 1]
    ev_data = dataclasses.replace(eval_split(cfg, full), mean=(), std=())
    ext = load_external(encoder, ev_data, weights, prefix, input_size, layer, seed, dev)
    config = external_config(ext, cfg)
    ident = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in ext.record["spec"])[:60]
    run_id = f"{cfg.dataset}-external-{slug}-{cfg.preset}-s{seed}-{ident}"
    run_dir = Path(out) / run_id
    _check_writable(run_dir / "results.jsonl")
    key = cache_key(ident, ev_data, "fp32", layer or "encode")
    emb, _cached = cached_embeddings(
        lambda: ext.encoder,
        ev_data,
        dev,
        run_dir / "embeddings",
        "external",
        key,
        ext.label,
        "fp32",
        progress=f"embedding {ext.label}" if progress else None,
    )
    model = ext.method if any(EVALUATORS.get(n).needs_model for n in names) else None
    options = eval_options(cfg.preset, eval_kwargs)
    results = run_evaluators(
        emb, names, options, model=model, data=ev_data, device=dev, artifact_dir=run_dir / "artifacts"
    )
    rows: list[dict] = []
    for name, (metrics, secs) in results.items():
        rows += make_rows(
            metrics,
            evaluator=name,
            run_id=run_id,
            method=ext.label,
            dataset=cfg.dataset,
            backbone=ext.record["spec"],
            preset=cfg.preset,
            epochs=0,
            seed=seed,
            config_hash=ident,
            config=config,
            device=provenance.hardware(dev),
            train_seconds=None,
            eval_seconds=secs,
            checkpoint=str(weights) if weights is not None else "",
            eval_options=EVALUATORS.get(name).resolved_options(options.get(name)),
        )
    for r in rows:
        r["encoder"] = ext.record
    save_rows(run_dir / "results.jsonl", rows)
    return rows


def evaluate(
    model: str | nn.Module,
    dataset: str = "fashion-mnist",
    evaluators: tuple[str, ...] | list[str] = ("knn", "linear"),
    out: str | Path | None = None,
    **options: Any,
) -> Any:
    """Evaluate ``model`` (an ``nn.Module`` or a SPEC such as ``"timm:resnet18"``) and return its
    result rows as a pandas DataFrame, one row per metric, the same rows ``ssl-bench eval
    --encoder`` writes. ``out``: also append them to ``<out>/<run_id>/results.jsonl`` (default: a
    temporary folder, removed). ``options``: those of :func:`evaluate_external` (``weights``,
    ``prefix``, ``input_size``, ``layer``, ``preset``, ``seed``, ``device``, ``eval_train_subset``,
    ``eval_test_subset``, ``eval_kwargs``, ``data_root``, ``data``, ``progress``)."""
    import tempfile

    import pandas as pd

    t0 = time.perf_counter()
    if out is None:
        with tempfile.TemporaryDirectory(prefix="ssl-bench-evaluate-") as tmp:
            rows = evaluate_external(model, Path(tmp), dataset=dataset, evaluators=list(evaluators), **options)
    else:
        rows = evaluate_external(model, Path(out), dataset=dataset, evaluators=list(evaluators), **options)
    df = pd.DataFrame(rows)
    df.attrs["seconds"] = time.perf_counter() - t0
    return df

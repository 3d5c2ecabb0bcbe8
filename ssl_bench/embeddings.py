"""Embeddings: computed once per checkpoint (train and test split), cached next to it.

Evaluators never see a model: they get an :class:`Embeddings` (float32 arrays + labels), so
``ssl-bench eval-embeddings`` can judge vectors from any model with the same code.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from . import precision as prec
from .build import build_method
from .checkpoint import atomic_write, file_digest, read_encoder
from .config import RunConfig
from .datasets import Data
from .errors import CheckpointError, ConfigError
from .method import DataSpec

#: Seed of the evaluation subsets (:func:`eval_split`): the same for every method and baseline.
EVAL_SUBSET_SEED = 1
#: Version of the embedding cache key; bump it when what the key must cover changes.
CACHE_KEY_VERSION = 2


@dataclass
class Embeddings:
    train_x: np.ndarray  # (N, D) float32
    train_y: np.ndarray | None  # (N,) int64
    test_x: np.ndarray
    test_y: np.ndarray | None
    source: str = ""

    @property
    def dim(self) -> int:
        return int(self.train_x.shape[1])

    def save(self, path: Path) -> None:
        arrays = {"train_x": self.train_x, "test_x": self.test_x}
        if self.train_y is not None:
            arrays["train_y"] = self.train_y
        if self.test_y is not None:
            arrays["test_y"] = self.test_y

        def write(tmp):
            with open(tmp, "wb") as f:
                np.savez(f, **cast(dict[str, Any], arrays))  # numpy's stub types **kwds as its options

        atomic_write(path, write)

    @classmethod
    def load(cls, path: Path, source: str = "") -> Embeddings:
        with np.load(path, allow_pickle=False) as z:
            return cls(z["train_x"], z["train_y"] if "train_y" in z else None, z["test_x"],
                       z["test_y"] if "test_y" in z else None, source or str(path))


@torch.inference_mode()
def embed_tensor(encode, data: Data, x: torch.Tensor, device: torch.device, batch_size: int = 1024,
                 precision: str = "fp32") -> np.ndarray:
    """``encode`` over ``x`` in batches; images go channels_last, the forward runs under the
    (resolved) ``precision`` of :mod:`ssl_bench.precision`, the result is float32."""
    cl = prec.wants_channels_last(data.kind, data.input_shape)
    out = []
    for i in range(0, len(x), batch_size):
        xb = prec.to_layout(data.normalize(data.to_float(x[i:i + batch_size].to(device))), cl)
        with prec.autocast(device, precision):
            z = encode(xb)
        out.append(z.float().flatten(1).cpu())
    return torch.cat(out).numpy().astype(np.float32, copy=False)


def embed_data(encode, data: Data, device: torch.device, source: str = "", precision: str = "fp32") -> Embeddings:
    return Embeddings(embed_tensor(encode, data, data.x_train, device, precision=precision), data.y_train.numpy(),
                      embed_tensor(encode, data, data.x_test, device, precision=precision), data.y_test.numpy(),
                      source)


def pixel_embeddings(data: Data) -> Embeddings:
    """The ``pixels`` baseline: the raw input in [0, 1], flattened."""
    return Embeddings(data.to_float(data.x_train).flatten(1).numpy(), data.y_train.numpy(),
                      data.to_float(data.x_test).flatten(1).numpy(), data.y_test.numpy(), "pixels")


def eval_split(cfg: RunConfig, data: Data, seed: int = EVAL_SUBSET_SEED) -> Data:
    """The evaluation subset of a config (seeded; the same for every method and baseline)."""
    return data.subset(cfg.eval_train_subset, cfg.eval_test_subset, seed=seed)


def data_fingerprint(data: Data) -> str:
    """Hash of the images/vectors and labels of both splits: any change of subset size, subset
    seed or underlying files gives another fingerprint (~0.1 s for Fashion-MNIST's 55 MB)."""
    h = hashlib.blake2b(digest_size=16)
    for t in (data.x_train, data.y_train, data.x_test, data.y_test):
        a = t.detach().cpu().contiguous().numpy()
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.data.cast("B"))
    return h.hexdigest()


def layer_encoder(method, layer: str = "encode"):
    """The function that embeds a batch: ``method.encode`` for ``layer="encode"``, else the output
    of the sub-module ``layer`` (a dotted name such as ``"backbone.net.0"``) during ``encode``."""
    if layer in ("", "encode"):
        return method.encode
    try:
        module = method.get_submodule(layer)
    except AttributeError:
        names = [n for n, _ in method.named_modules() if n][:12]
        raise ConfigError(f"layer {layer!r}: no such sub-module of {type(method).__name__} "
                          f"(e.g. {', '.join(names)})") from None

    def encode(x):
        out = {}
        def keep(_m, _i, o):  # a copy: a later in-place op (ReLU(inplace=True)) must not change it
            o = o[0] if isinstance(o, (tuple, list)) else o
            out["z"] = o.clone()

        handle = module.register_forward_hook(keep)
        try:
            method.encode(x)
        finally:
            handle.remove()
        if "z" not in out:
            raise ConfigError(f"layer {layer!r} is not used by {type(method).__name__}.encode")
        return out["z"]

    return encode


def cache_key(digest: str, data: Data, precision: str, layer: str = "encode") -> dict:
    """Everything that changes a checkpoint's embeddings: the checkpoint's bytes, the evaluation
    data (subsets and their seed, through the content fingerprint), precision and layer."""
    return {"version": CACHE_KEY_VERSION, "digest": digest, "data": data.name, "n_train": len(data.x_train),
            "n_test": len(data.x_test), "data_fingerprint": data_fingerprint(data), "precision": precision,
            "layer": layer or "encode"}


def load_method_from_checkpoint(path: Path, device: torch.device):
    """Rebuild the method of a checkpoint and load its backbone weights (strict)."""
    state, meta = read_encoder(path)
    try:
        cfg = RunConfig.from_dict(meta["config"])
        spec = DataSpec(kind=meta["kind"], input_shape=tuple(meta["input_shape"]))
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} has incomplete metadata (missing {exc})") from exc
    method = build_method(cfg, spec)
    try:
        method.backbone.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} does not match its configured backbone: "
                              f"{str(exc).splitlines()[0]}") from exc
    method = prec.model_to_layout(method.to(device), prec.wants_channels_last(spec.kind, spec.input_shape))
    return method.eval(), cfg, meta


def checkpoint_embeddings(path: Path, data: Data, device: torch.device, cache_dir: Path | None = None,
                          layer: str = "encode", precision: str | None = None):
    """(embeddings, config, metadata, from_cache, method) of a checkpoint on ``data``; the
    embeddings are cached under :func:`cache_key` (checkpoint digest, data fingerprint, precision,
    layer), the rebuilt method (eval mode) is returned for model evaluators so that nobody loads
    the checkpoint twice. ``precision`` defaults to the one the checkpoint was trained with;
    ``layer`` is ``"encode"`` or a sub-module name (:func:`layer_encoder`)."""
    path = Path(path)
    digest = file_digest(path)
    cache_dir = Path(cache_dir) if cache_dir else path.parent.parent / "embeddings"
    method, cfg, meta = load_method_from_checkpoint(path, device)
    precision = prec.resolve_precision(precision or cfg.precision, device)
    key_fields = cache_key(digest, data, precision, layer)
    key_hash = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:16]
    key = f"{path.stem}-{key_hash}"
    cache = cache_dir / f"{key}.npz"
    if cache.is_file():
        try:
            return Embeddings.load(cache, source=str(path)), cfg, meta, True, method
        except Exception:  # a damaged cache is recomputed, never trusted
            cache.unlink()
    emb = embed_data(layer_encoder(method, layer), data, device, source=str(path), precision=precision)
    emb.save(cache)
    (cache_dir / f"{key}.json").write_text(json.dumps({"checkpoint": str(path), **key_fields}, sort_keys=True) + "\n")
    return emb, cfg, meta, False, method

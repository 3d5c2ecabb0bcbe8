"""Embeddings: computed once per checkpoint (train and test split), cached next to it.

Evaluators never see a model: they get an :class:`Embeddings` (float32 arrays + labels), so
``ssl-bench eval-embeddings`` can judge vectors from any model with the same code.

Streamed data (:mod:`ssl_bench.streaming`) is embedded batch by batch into ``.npy`` files
(:mod:`ssl_bench.ondisk`) that the :class:`Embeddings` then hold memory-mapped: the vectors of a
million images are never in RAM at once. Rows of unreadable files are dropped (and counted in
``Embeddings.info["corrupt_files"]``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from . import ondisk, streaming, threads
from . import precision as prec
from .build import build_method
from .checkpoint import atomic_write, atomic_write_dir, build_to_fit, check_data_fits, file_digest, read_encoder
from .config import RunConfig
from .data import Data, in_memory
from .errors import CheckpointError, ConfigError
from .method import DataSpec, Method
from .precision import ModuleT

#: what embeds a batch: ``method.encode`` or :func:`layer_encoder`'s hook on a sub-module
Encoder = Callable[[torch.Tensor], torch.Tensor]

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
    info: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.train_x.shape[1])

    def labels(self) -> tuple[np.ndarray, np.ndarray]:
        """``(train_y, test_y)``; a one-line ConfigError when the embeddings carry no labels."""
        if self.train_y is None or self.test_y is None:
            raise ConfigError(f"{self.source or 'embeddings'}: labels needed (train_y and test_y), none stored")
        return self.train_y, self.test_y

    @property
    def on_disk(self) -> bool:
        """True when the vectors are memory-mapped ``.npy`` files (streamed data)."""
        return ondisk.is_on_disk(self.train_x) or ondisk.is_on_disk(self.test_x)

    def save_dir(self, path: Path) -> None:
        """Write (or move) the arrays into the folder ``path`` as ``.npy`` files, atomically."""

        def write(tmp: Path) -> None:
            for name in ("train_x", "train_y", "test_x", "test_y"):
                a = getattr(self, name)
                if a is None:
                    continue
                if ondisk.is_on_disk(a):
                    shutil.copyfile(a.filename, tmp / f"{name}.npy")
                else:
                    ondisk.save_npy(tmp / f"{name}.npy", np.asarray(a))
            (tmp / "info.json").write_text(json.dumps(self.info, sort_keys=True) + "\n")

        atomic_write_dir(Path(path), write)

    @classmethod
    def load_dir(cls, path: Path, source: str = "") -> Embeddings:
        path = Path(path)

        def arr(name: str) -> np.ndarray | None:
            p = path / f"{name}.npy"
            return ondisk.open_npy(p) if p.is_file() else None

        info = json.loads((path / "info.json").read_text()) if (path / "info.json").is_file() else {}
        tx, te = arr("train_x"), arr("test_x")
        if tx is None or te is None:
            raise CheckpointError(f"{path}: incomplete embeddings folder")
        return cls(tx, arr("train_y"), te, arr("test_y"), source or str(path), info)

    def save(self, path: Path) -> None:
        arrays = {"train_x": self.train_x, "test_x": self.test_x}
        if self.train_y is not None:
            arrays["train_y"] = self.train_y
        if self.test_y is not None:
            arrays["test_y"] = self.test_y

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **cast(dict[str, Any], arrays))  # numpy's stub types **kwds as its options

        atomic_write(path, write)

    @classmethod
    def load(cls, path: Path, source: str = "") -> Embeddings:
        with np.load(path, allow_pickle=False) as z:
            return cls(
                z["train_x"],
                z["train_y"] if "train_y" in z else None,
                z["test_x"],
                z["test_y"] if "test_y" in z else None,
                source or str(path),
            )


@torch.inference_mode()
def embed_tensor(
    encode: Encoder,
    data: Data,
    x: torch.Tensor,
    device: torch.device,
    batch_size: int = 1024,
    precision: str = "fp32",
    progress: str | None = None,
) -> np.ndarray:
    """``encode`` over ``x`` in batches; images go channels_last, the forward runs under the
    (resolved) ``precision`` of :mod:`ssl_bench.precision`, the result is float32. ``progress``:
    the label of a progress bar (images done, rate, ETA) on a terminal's stderr; None: no bar."""
    cl = prec.wants_channels_last(data.kind, data.input_shape)
    out = []
    with embed_progress(len(x), progress) as bar:
        for i in range(0, len(x), batch_size):
            threads.adapt()
            xb = prec.to_layout(data.normalize(data.to_float(x[i : i + batch_size].to(device))), cl)
            with prec.autocast(device, precision):
                z = encode(xb)
            out.append(z.float().flatten(1).cpu())
            bar.update(len(xb))
    return torch.cat(out).numpy().astype(np.float32, copy=False)


def embed_progress(total: int, label: str | None) -> Any:
    """A tqdm bar over ``total`` images with the rate and the ETA; off without ``label`` and when
    stderr is not a terminal (tqdm's ``disable=None``)."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=label or "",
        unit="img",
        leave=False,
        smoothing=0.1,
        dynamic_ncols=True,
        disable=None if label else True,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} img [{elapsed} elapsed, ETA {remaining}, "
        "{rate_fmt}]",
    )


@torch.inference_mode()
def embed_source(
    encode: Encoder,
    data: Data,
    images: streaming.ImageSource,
    device: torch.device,
    path: Path,
    batch_size: int = 256,
    precision: str = "fp32",
    num_workers: int | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Embed streamed images into the ``.npy`` file ``path`` batch by batch: (memory-mapped
    embeddings, labels of the kept rows, names of the unreadable files whose rows were dropped)."""
    cl = prec.wants_channels_last(data.kind, data.input_shape)
    workers = streaming.default_num_workers() if num_workers is None else num_workers
    cuda = device.type == "cuda"
    corrupt = streaming.CorruptFiles()
    labels: list[np.ndarray] = []
    writer: ondisk.NpyWriter | None = None
    normalize = data.normalizer(device)
    try:
        for xb, yb, bad, ok in streaming.loader(
            images, batch_size=batch_size, num_workers=workers, pin_memory=cuda, substitute=False
        ):
            for name, reason in bad:
                corrupt.add(name, reason)
            x = prec.to_layout(normalize(data.to_float(xb.to(device, non_blocking=cuda))), cl)
            with prec.autocast(device, precision):
                z = encode(x)
            za = z.float().flatten(1).cpu().numpy()
            keep = ok.numpy()
            if writer is None:
                writer = ondisk.NpyWriter(path, za.shape[1:], np.float32)
            writer.append(za[keep])
            labels.append(yb.numpy()[keep])
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise ConfigError(f"no images to embed in {images.name_of(0) if len(images) else 'an empty split'}")
    return ondisk.open_npy(path), np.concatenate(labels).astype(np.int64), corrupt.names


def embed_data(
    encode: Encoder,
    data: Data,
    device: torch.device,
    source: str = "",
    precision: str = "fp32",
    out_dir: Path | None = None,
    num_workers: int | None = None,
    progress: str | None = None,
) -> Embeddings:
    """Embeddings of both splits. Streamed splits are written to ``out_dir`` (default: a temporary
    folder whose files are unlinked once mapped) and held memory-mapped. ``progress``: label of
    the in-memory splits' progress bars (:func:`embed_tensor`)."""
    if not (streaming.is_streamed(data.x_train) or streaming.is_streamed(data.x_test)):
        bar = (lambda split: f"{progress} {split}") if progress else (lambda split: None)
        return Embeddings(
            embed_tensor(encode, data, in_memory(data.x_train), device, precision=precision, progress=bar("train")),
            data.y_train.numpy(),
            embed_tensor(encode, data, in_memory(data.x_test), device, precision=precision, progress=bar("test")),
            data.y_test.numpy(),
            source,
        )
    tmp = out_dir is None
    folder = Path(tempfile.mkdtemp(prefix="ssl-bench-emb-")) if out_dir is None else Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, np.ndarray] = {}
    corrupt: list[str] = []
    try:
        for split, x, y in (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)):
            if streaming.is_streamed(x):
                assert isinstance(x, streaming.ImageSource)
                out[f"{split}_x"], out[f"{split}_y"], bad = embed_source(
                    encode, data, x, device, folder / f"{split}_x.npy", precision=precision, num_workers=num_workers
                )
                ondisk.save_npy(folder / f"{split}_y.npy", out[f"{split}_y"])
                corrupt += bad
            else:
                ondisk.save_npy(
                    folder / f"{split}_x.npy", embed_tensor(encode, data, in_memory(x), device, precision=precision)
                )
                ondisk.save_npy(folder / f"{split}_y.npy", y.numpy())
                out[f"{split}_x"], out[f"{split}_y"] = (
                    ondisk.open_npy(folder / f"{split}_x.npy"),
                    ondisk.open_npy(folder / f"{split}_y.npy"),
                )
    finally:
        if tmp:  # the mappings keep the unlinked files alive until the arrays go
            shutil.rmtree(folder, ignore_errors=True)
    info = {"corrupt_files": {"count": len(corrupt), "first": sorted(corrupt)[:20]}}
    return Embeddings(out["train_x"], out["train_y"], out["test_x"], out["test_y"], source, info)


def pixel_embeddings(data: Data) -> Embeddings:
    """The ``pixels`` baseline: the raw input in [0, 1], flattened."""
    if streaming.is_streamed(data.x_train) or streaming.is_streamed(data.x_test):
        return embed_data(lambda x: x, data, torch.device("cpu"), "pixels")
    return Embeddings(
        data.to_float(in_memory(data.x_train)).flatten(1).numpy(),
        data.y_train.numpy(),
        data.to_float(in_memory(data.x_test)).flatten(1).numpy(),
        data.y_test.numpy(),
        "pixels",
    )


def eval_split(cfg: RunConfig, data: Data, seed: int = EVAL_SUBSET_SEED) -> Data:
    """The evaluation subset of a config (seeded; the same for every method and baseline)."""
    return data.subset(cfg.eval_train_subset, cfg.eval_test_subset, seed=seed)


def data_fingerprint(data: Data) -> str:
    """Hash of the images/vectors and labels of both splits: any change of subset size, subset
    seed or underlying files gives another fingerprint (~0.1 s for Fashion-MNIST's 55 MB)."""
    h = hashlib.blake2b(digest_size=16)
    for t in (data.x_train, data.y_train, data.x_test, data.y_test):
        if isinstance(t, streaming.ImageSource):  # names, sizes and labels: files are not read
            h.update(t.fingerprint().encode())
            continue
        a = t.detach().cpu().contiguous().numpy()
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.data.cast("B"))
    return h.hexdigest()


def layer_encoder(method: Method, layer: str = "encode") -> Encoder:
    """The function that embeds a batch: ``method.encode`` for ``layer="encode"``, else the output
    of the sub-module ``layer`` (a dotted name such as ``"backbone.net.0"``) during ``encode``."""
    if layer in ("", "encode"):
        return method.encode
    try:
        module = method.get_submodule(layer)
    except AttributeError:
        names = [n for n, _ in method.named_modules() if n][:12]
        raise ConfigError(
            f"layer {layer!r}: no such sub-module of {type(method).__name__} (e.g. {', '.join(names)})"
        ) from None

    def encode(x: torch.Tensor) -> torch.Tensor:
        out: dict[str, torch.Tensor] = {}

        def keep(
            _m: nn.Module, _i: Any, o: Any
        ) -> None:  # a copy: a later in-place op (ReLU(inplace=True)) must not change it
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
    return {
        "version": CACHE_KEY_VERSION,
        "digest": digest,
        "data": data.name,
        "n_train": len(data.x_train),
        "n_test": len(data.x_test),
        "data_fingerprint": data_fingerprint(data),
        "precision": precision,
        "layer": layer or "encode",
    }


def inference_copy(model: ModuleT) -> ModuleT:
    """A copy of ``model`` (eval mode) for embedding: each ``Conv2d`` followed directly by a
    ``BatchNorm2d`` in an ``nn.Sequential`` (cnn-small, cnn-wide) is folded into one convolution,
    since an eval-mode BatchNorm is a per-channel affine map. Same outputs up to float rounding
    (tests/evaluators: max |diff| < 1e-4 on cnn-small), one pass less over each feature map;
    ``model`` itself is untouched (the model evaluators fine-tune it)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    copy = deepcopy(model).eval()
    folded = False
    for seq in copy.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        names = list(seq._modules)
        for a, b in zip(names[:-1], names[1:], strict=True):
            conv, bn = seq._modules[a], seq._modules[b]
            if (
                isinstance(conv, nn.Conv2d)
                and isinstance(bn, nn.BatchNorm2d)
                and bn.running_mean is not None
                and bn.running_var is not None
            ):
                seq._modules[a] = fuse_conv_bn_eval(conv, bn)
                seq._modules[b] = nn.Identity()
                folded = True
    if folded and any(p.is_contiguous(memory_format=torch.channels_last) and p.dim() == 4 for p in model.parameters()):
        copy = prec.model_to_layout(copy, True)
    return copy


def load_method_from_checkpoint(
    path: Path, device: torch.device, data: Data | None = None
) -> tuple[Method, RunConfig, dict[str, Any]]:
    """Rebuild the method of a checkpoint and load its backbone weights (strict). The metadata must
    describe the weights (:func:`~ssl_bench.checkpoint.build_to_fit`) and, when given, ``data``
    must be of the checkpoint's kind and input size (:func:`~ssl_bench.checkpoint.check_data_fits`)."""
    state, meta = read_encoder(path)
    if data is not None:
        check_data_fits(path, meta, data.name, data.kind, data.input_shape)
    try:
        cfg = RunConfig.from_dict(meta["config"])
        spec = DataSpec(kind=meta["kind"], input_shape=tuple(meta["input_shape"]))
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} has incomplete metadata (missing {exc})") from exc
    method = cast(Method, build_to_fit(path, state, lambda: build_method(cfg, spec)))
    try:
        method.backbone.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint {path} does not match its configured backbone: {str(exc).splitlines()[0]}"
        ) from exc
    method = prec.model_to_layout(method.to(device), prec.wants_channels_last(spec.kind, spec.input_shape))
    return method.eval(), cfg, meta


def checkpoint_embeddings(
    path: Path,
    data: Data,
    device: torch.device,
    cache_dir: Path | None = None,
    layer: str = "encode",
    precision: str | None = None,
    loaded: tuple[Method, RunConfig, dict[str, Any]] | None = None,
) -> tuple[Embeddings, RunConfig, dict[str, Any], bool, Method]:
    """(embeddings, config, metadata, from_cache, method) of a checkpoint on ``data``; the
    embeddings are cached under :func:`cache_key` (checkpoint digest, data fingerprint, precision,
    layer), the rebuilt method (eval mode) is returned for model evaluators so that nobody loads
    the checkpoint twice. ``loaded``: the ``(method, config, metadata)`` of
    :func:`load_method_from_checkpoint` when the caller has them already (the file is then not
    read again). ``precision`` defaults to the one the checkpoint was trained with;
    ``layer`` is ``"encode"`` or a sub-module name (:func:`layer_encoder`)."""
    path = Path(path)
    cache_dir = Path(cache_dir) if cache_dir else path.parent.parent / "embeddings"
    if loaded is None:
        loaded = load_method_from_checkpoint(path, device, data)
    else:  # read by the caller: the data must still be of the checkpoint's kind and input size
        check_data_fits(path, loaded[2], data.name, data.kind, data.input_shape)
    method, cfg, meta = loaded
    digest = checkpoint_digest(path, meta)
    precision = prec.resolve_precision(precision or cfg.precision, device)
    key_fields = cache_key(digest, data, precision, layer)

    def encoder() -> Encoder:
        return layer_encoder(inference_copy(method) if layer == "encode" else method, layer)

    emb, cached = cached_embeddings(
        encoder, data, device, cache_dir, path.stem, key_fields, str(path), precision, num_workers=cfg.num_workers
    )
    return emb, cfg, meta, cached, method


def checkpoint_digest(path: Path, meta: dict[str, Any]) -> str:
    """What identifies a checkpoint's embeddings: a hash of its metadata, which holds the digest of
    its tensors (verified when it was read); a file of before that digest: the hash of its bytes."""
    from .checkpoint import DIGEST_KEY

    if isinstance(meta.get(DIGEST_KEY), str):
        return hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return file_digest(path)


def cached_embeddings(
    encoder: Callable[[], Encoder],
    data: Data,
    device: torch.device,
    cache_dir: Path,
    stem: str,
    key_fields: dict,
    source: str,
    precision: str,
    num_workers: int | None = None,
    progress: str | None = None,
) -> tuple[Embeddings, bool]:
    """(embeddings, from_cache): read from ``cache_dir`` under ``stem`` and the hash of
    ``key_fields``, else computed with ``encoder()`` and cached (a ``.npz``; streamed data: a folder
    of ``.npy`` files written in chunks and read memory-mapped). A damaged cache is recomputed,
    never trusted. ``progress``: the label of a progress bar with an ETA (None: no bar)."""
    key_hash = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:16]
    key = f"{stem}-{key_hash}"
    note = json.dumps({"checkpoint": source, **key_fields}, sort_keys=True) + "\n"
    if streaming.is_streamed(data.x_train) or streaming.is_streamed(data.x_test):
        folder = cache_dir / f"{key}.emb"
        if (folder / "info.json").is_file():
            try:
                return Embeddings.load_dir(folder, source=source), True
            except Exception:  # a damaged cache is recomputed, never trusted
                shutil.rmtree(folder, ignore_errors=True)

        def write(work: Path) -> None:
            emb = embed_data(
                encoder(), data, device, source=source, precision=precision, out_dir=work, num_workers=num_workers
            )
            (work / "info.json").write_text(json.dumps(emb.info, sort_keys=True) + "\n")

        atomic_write_dir(folder, write)
        (cache_dir / f"{key}.json").write_text(note)
        return Embeddings.load_dir(folder, source=source), False
    cache = cache_dir / f"{key}.npz"
    if cache.is_file():
        try:
            return Embeddings.load(cache, source=source), True
        except Exception:  # a damaged cache is recomputed, never trusted
            cache.unlink()
    emb = embed_data(encoder(), data, device, source=source, precision=precision, progress=progress)
    emb.save(cache)
    (cache_dir / f"{key}.json").write_text(note)
    return emb, False

"""Name -> object registries with lazy discovery of built-ins and entry points.

Four registries exist: methods, evaluators, datasets and backbones. Each is filled from

* the built-in plugin package or module (``ssl_bench.methods``, ``ssl_bench.backbones``...),
  imported module by module on the first lookup, so that ``import ssl_bench`` stays cheap;
* the entry-point group of the same name (``ssl_bench.methods``...), so a third-party package
  adds a plugin by declaring ``[project.entry-points."ssl_bench.methods"] mymethod = "pkg.mod"``
  without touching this repository. The entry point may name a module (whose import registers
  the plugin through the decorator) or the plugin object itself.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar, cast, overload

from .errors import SSLBenchError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, builtin_package: str | None, group: str) -> None:
        self.kind = kind
        self.builtin_package = builtin_package
        self.group = group
        self._items: dict[str, T] = {}
        self._sources: dict[str, str] = {}
        self._loaded = False
        self._loading = False

    # -- registration -------------------------------------------------------------------------
    @overload
    def register(self, name: str, obj: None = None, *, source: str | None = None) -> Callable[[T], T]: ...
    @overload
    def register(self, name: str, obj: T, *, source: str | None = None) -> T: ...
    def register(self, name: str, obj: T | None = None, *, source: str | None = None) -> T | Callable[[T], T]:
        """Register ``obj`` under ``name``; usable as ``@registry.register("name")``."""
        if not isinstance(name, str) or not name or name != name.strip().lower():
            raise ValueError(f"{self.kind} names must be non-empty lower-case strings, got {name!r}")

        def deco(o: T) -> T:
            prev = self._items.get(name)
            if prev is not None and prev is not o and _qualname(prev) != _qualname(o):
                raise SSLBenchError(f"{self.kind} {name!r} is registered twice: {_qualname(prev)} and {_qualname(o)}")
            self._items[name] = o
            self._sources[name] = source or getattr(o, "__module__", None) or "?"
            try:
                cast(Any, o).registry_name = name  # any object: a class, a function, a module
            except (AttributeError, TypeError):
                pass
            return o

        return deco(obj) if obj is not None else deco

    def unregister(self, name: str) -> None:
        self._items.pop(name, None)
        self._sources.pop(name, None)

    # -- discovery ----------------------------------------------------------------------------
    def _load(self) -> None:
        if self._loaded or self._loading:
            return
        self._loading = True
        try:
            if self.builtin_package:
                pkg = importlib.import_module(self.builtin_package)
                for info in sorted(pkgutil.iter_modules(getattr(pkg, "__path__", [])), key=lambda i: i.name):
                    if not info.name.startswith("_"):
                        importlib.import_module(f"{self.builtin_package}.{info.name}")
            for ep in entry_points(group=self.group):
                try:
                    obj = ep.load()
                except Exception as exc:  # a broken third-party plugin must not break the others
                    raise SSLBenchError(
                        f"entry point {ep.name!r} in group {self.group!r} failed to load: {exc}"
                    ) from exc
                if ep.name not in self._items and not _is_module(obj):
                    self.register(ep.name, obj, source=f"entry point {ep.value}")
            self._loaded = True
        finally:
            self._loading = False

    def reload(self) -> None:
        """Forget the discovery state (tests use this after installing a plugin)."""
        self._loaded = False
        self._load()

    # -- lookup -------------------------------------------------------------------------------
    def get(self, name: str) -> T:
        self._load()
        key = name.strip().lower() if isinstance(name, str) else name
        if key not in self._items:
            known = ", ".join(self.names()) or "(none)"
            close = difflib.get_close_matches(str(key), self.names(), n=3, cutoff=0.6)
            hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
            raise UnknownNameError(f"unknown {self.kind} {name!r}; {hint}known {self.kind}s: {known}")
        return self._items[key]

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def source(self, name: str) -> str:
        self.get(name)
        return self._sources[name]

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def resolve(self, spec: str | list[str]) -> list[str]:
        """``"all"`` -> every name, ``"default"`` -> the plugins whose class attribute ``default``
        is true (unset counts as true), ordered by their ``order`` attribute, then name;
        ``"a,b"`` -> [a, b] (each checked); ``"default,b"`` -> the default ones, then b."""
        items = spec if isinstance(spec, list) else [s.strip() for s in str(spec).split(",") if s.strip()]
        if items == ["all"]:
            return self.names()
        out: list[str] = []
        for n in items:
            if n.strip().lower() == "default" and "default" not in self:
                out += [d for d in self._defaults() if d not in out]
                continue
            self.get(n)
            if n.strip().lower() not in out:
                out.append(n.strip().lower())
        return out

    def _defaults(self) -> list[str]:
        chosen = [n for n in self.names() if getattr(self._items[n], "default", True) is not False]
        return sorted(chosen, key=lambda n: (getattr(self._items[n], "order", 100), n))


def _is_module(obj: Any) -> bool:
    import types

    return isinstance(obj, types.ModuleType)


def _qualname(o: Any) -> str:
    return f"{getattr(o, '__module__', '?')}.{getattr(o, '__qualname__', repr(o))}"


#: The suffix of a backbone *family* name: ``"timm:<model>"`` registers a builder that makes any
#: ``timm:<name>`` (the part after the colon is handed to the builder).
FAMILY_SUFFIX = ":<model>"


class BackboneRegistry(Registry):
    """Backbone builders by name, plus prefix families (``timm:<model>`` builds ``timm:resnet18``).

    A builder is a callable ``builder(input_shape, **kwargs) -> nn.Module`` (a family builder:
    ``builder(input_shape, model_name, **kwargs)``) whose module has an ``out_dim`` attribute.
    It may carry ``data_kinds`` (e.g. ``("image",)``), the data kinds it accepts.
    """

    @overload
    def register(self, name: str, obj: None = None, *, source: str | None = None) -> Callable[[Any], Any]: ...
    @overload
    def register(self, name: str, obj: Any, *, source: str | None = None) -> Any: ...
    def register(self, name: str, obj: Any = None, *, source: str | None = None) -> Any:
        if (
            isinstance(name, str)
            and ":" in name
            and not (name.endswith(FAMILY_SUFFIX) and name.count(":") == 1 and len(name) > len(FAMILY_SUFFIX))
        ):
            raise ValueError(f"backbone names have no ':' except a family 'prefix{FAMILY_SUFFIX}', got {name!r}")
        return super().register(name, obj, source=source)

    def lookup(self, name: str) -> tuple[Any, str | None]:
        """(builder, model name) for ``name``: model name None for a plain name, the part after
        the prefix for a family member (``"timm:resnet18"`` -> (timm builder, ``"resnet18"``))."""
        self._load()
        key = name.strip() if isinstance(name, str) else name
        if isinstance(key, str) and key.lower() in self._items and not key.endswith(FAMILY_SUFFIX):
            return self._items[key.lower()], None
        if isinstance(key, str) and ":" in key:
            prefix, _, model = key.partition(":")
            family = prefix.lower() + FAMILY_SUFFIX
            if model and family in self._items:
                return self._items[family], model
        known = ", ".join(self.names()) or "(none)"
        raise UnknownNameError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}")

    def get(self, name: str) -> Any:
        self._load()
        if isinstance(name, str) and name.strip().lower() in self._items:  # incl. "timm:<model>" itself
            return self._items[name.strip().lower()]
        return self.lookup(name)[0]

    def __contains__(self, name: str) -> bool:
        try:
            self.get(name)
        except UnknownNameError:
            return False
        return True


METHODS: Registry = Registry("method", "ssl_bench.methods", "ssl_bench.methods")
EVALUATORS: Registry = Registry("evaluator", "ssl_bench.evaluators", "ssl_bench.evaluators")
DATASETS: Registry = Registry("dataset", "ssl_bench.datasets", "ssl_bench.datasets")
BACKBONES: BackboneRegistry = BackboneRegistry("backbone", "ssl_bench.backbones", "ssl_bench.backbones")


def register_method(name: str) -> Callable[[T], T]:
    return METHODS.register(name)


def register_evaluator(name: str) -> Callable[[T], T]:
    return EVALUATORS.register(name)


def register_dataset(name: str, *, image_size: int | tuple[int, int] | None = None) -> Callable[[T], T]:
    """Register a dataset loader; ``image_size`` = the (H, W) (or side) of the images it returns when
    that is fixed, so tables can describe a backbone whose patch size follows the data without loading
    it (:func:`ssl_bench.data.image_size`). A loader with an ``image_size`` option needs none."""
    reg = DATASETS.register(name)
    if image_size is None:
        return reg

    def deco(loader: T) -> T:
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        loader.image_size = size  # type: ignore[attr-defined]
        return reg(loader)

    return deco


def register_backbone(name: str, *, kinds: tuple[str, ...] | None = None) -> Callable[[T], T]:
    """Register a backbone builder; ``kinds`` = the data kinds it accepts (default: any)."""
    reg = BACKBONES.register(name)

    def deco(builder: T) -> T:
        if kinds is not None:
            builder.data_kinds = tuple(kinds)  # type: ignore[attr-defined]
        return reg(builder)

    return deco

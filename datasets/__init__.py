"""Built-in datasets, installed as ``ssl_bench.datasets``: one module per dataset (or family).

Every module here is imported on the first registry lookup; each registers its loaders with
``@register_dataset(name)``. The framework they share (:class:`~ssl_bench.data.Data`,
:func:`~ssl_bench.data.load_dataset`, checksums, data roots) is :mod:`ssl_bench.data`; its public
names are re-exported here, so ``from ssl_bench.datasets import load_dataset`` keeps working.
Third-party datasets use the ``ssl_bench.datasets`` entry-point group.
"""

from ssl_bench.data import (
    Data,
    Images,
    VAL_SEED,
    VAL_SIZE,
    data_root,
    in_memory,
    load_dataset,
    validation_split,
    verify_checksum,
)
from ssl_bench.kinds import DataKind
from ssl_bench.registry import DATASETS, register_dataset

from .cifar import safe_unpickle
from .fashion_mnist import read_idx

__all__ = [
    "DATASETS",
    "VAL_SEED",
    "VAL_SIZE",
    "Data",
    "DataKind",
    "Images",
    "data_root",
    "in_memory",
    "load_dataset",
    "read_idx",
    "register_dataset",
    "safe_unpickle",
    "validation_split",
    "verify_checksum",
]

"""The evaluator contract (ssl_bench/evaluator.py), checked on every registered evaluator.

Built-in or from an entry point, each evaluator must:

* return a dict of metric name -> finite float;
* give the same result for the same input (a fresh instance, the same options);
* reject an option it does not have (one-line ConfigError);
* respect ``needs_labels``: an evaluator that needs labels refuses embeddings without them; one
  that does not gives the same result without labels (or, for a model evaluator, with the
  labels shuffled).

Model evaluators (``needs_model``) run on a small untrained MLP over 2-D mixture data and must
leave the model as they found it. Each evaluator runs with its ``smoke`` preset options on small
random inputs, so the whole file takes seconds.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from ssl_bench.backbones import build_backbone
from ssl_bench.datasets import Data, load_dataset
from ssl_bench.embeddings import Embeddings
from ssl_bench.errors import ConfigError
from ssl_bench.method import Method
from ssl_bench.registry import EVALUATORS

DEVICE = torch.device("cpu")


def smoke_options(name: str) -> dict:
    return dict(EVALUATORS.get(name).preset_options.get("smoke", {}))


def make(name: str):
    return EVALUATORS.get(name)(**smoke_options(name))


def embeddings(labels: bool = True) -> Embeddings:
    """Three separated classes in 8 dimensions, 150 train / 60 test rows."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 8)) * 3
    ytr, yte = np.arange(150) % 3, np.arange(60) % 3
    xtr = (centres[ytr] + rng.standard_normal((150, 8))).astype(np.float32)
    xte = (centres[yte] + rng.standard_normal((60, 8))).astype(np.float32)
    return Embeddings(xtr, ytr.astype(np.int64) if labels else None, xte, yte.astype(np.int64) if labels else None)


def model_and_data() -> tuple[Method, Data]:
    data = load_dataset("mog2d", n_train=512, n_test=256)
    torch.manual_seed(0)
    method = Method(build_backbone("mlp", data.input_shape, data.kind)).eval()
    return method, data


def run(name: str, emb: Embeddings | None = None, model=None, data: Data | None = None) -> dict:
    ev = make(name)
    if ev.needs_model:
        return ev.run_model(model, data, DEVICE)
    return ev(emb)


def assert_finite_floats(name: str, metrics: dict) -> None:
    assert isinstance(metrics, dict) and metrics, f"{name}: returned {metrics!r}"
    for key, value in metrics.items():
        assert isinstance(key, str), f"{name}: metric name {key!r}"
        assert isinstance(value, float) and not isinstance(value, bool), f"{name}.{key} = {value!r} is not a float"
        assert math.isfinite(value), f"{name}.{key} = {value}"


@pytest.fixture(scope="module")
def model_inputs():
    return model_and_data()


@pytest.mark.parametrize("name", EVALUATORS.names())
def test_results_are_finite_floats_and_repeatable(name, model_inputs):
    method, data = model_inputs
    before = copy.deepcopy(method.state_dict())
    first = run(name, embeddings(), method, data)
    assert_finite_floats(name, first)
    assert run(name, embeddings(), method, data) == first, f"{name}: two runs on the same input differ"
    if EVALUATORS.get(name).needs_model:  # the judged model is never modified (copy it to fine-tune)
        after = method.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before), f"{name} changed the model's weights"


@pytest.mark.parametrize("name", EVALUATORS.names())
def test_unknown_options_are_rejected(name):
    with pytest.raises(ConfigError, match="no_such_option"):
        EVALUATORS.get(name)(no_such_option=1)


@pytest.mark.parametrize("name", EVALUATORS.names())
def test_needs_labels_is_respected(name, model_inputs):
    cls = EVALUATORS.get(name)
    if cls.needs_model:
        if cls.needs_labels:
            pytest.skip(f"{name} reads labels from the evaluation data: nothing to compare")
        method, data = model_inputs
        g = torch.Generator().manual_seed(1)
        shuffled = Data(
            data.name,
            data.x_train,
            data.y_train[torch.randperm(len(data.y_train), generator=g)],
            data.x_test,
            torch.zeros_like(data.y_test),
            data.num_classes,
            data.kind,
            data.mean,
            data.std,
        )
        assert run(name, model=method, data=shuffled) == run(name, model=method, data=data)
    elif cls.needs_labels:
        with pytest.raises(ConfigError, match="needs labels"):
            make(name)(embeddings(labels=False))
    else:
        assert run(name, embeddings(labels=False)) == run(name, embeddings())

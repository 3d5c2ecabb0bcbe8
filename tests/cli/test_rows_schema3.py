"""Result schema 3: compact results files (the configuration once per evaluation, rows refer to
it), old full rows still read, the recipe in a row's identity, evaluator versions never mixed."""

import json

import pandas as pd
import pytest

from ssl_bench.config import RunConfig
from ssl_bench.errors import ConfigError
from ssl_bench.leaderboard import aggregate, compare, load_frame
from ssl_bench.results import (
    RESULT_SCHEMA_VERSION,
    append_rows,
    compact_file,
    make_rows,
    read_rows,
    recipe_hash,
    training_hash,
)


def _rows(seed=0, value=80.0, recipe=None, version="1", method="simclr", n_metrics=20):
    cfg = RunConfig(method=method, dataset="digits", preset="smoke", seed=seed).to_dict()
    metrics = {"top1": value, **{f"precision_class{c}": value - c for c in range(n_metrics)}}
    return make_rows(
        metrics,
        evaluator="knn",
        run_id=f"digits-{method}-cnn-small-smoke-s{seed}-abc{seed}",
        method=method,
        dataset="digits",
        backbone="cnn-small",
        preset="smoke",
        epochs=1,
        seed=seed,
        config_hash=f"abc{seed}",
        config=cfg,
        device="cpu",
        train_seconds=1.0,
        eval_seconds=0.5,
        eval_options={"k": 20, "temperature": 0.07},
        train_meta={"recipe": recipe, "git_commit": "abc-dirty", "source_digest": "d" * 16} if recipe else None,
        evaluator_version=version,
        data_fingerprint="f" * 32,
    )


def test_compact_file_reads_back_the_same_rows_and_is_much_smaller(tmp_path):
    rows = _rows(recipe={"temperature": 0.1, "optim.lr": 1e-3, "optim.weight_decay": 0.0})
    p = tmp_path / "r" / "results.jsonl"
    append_rows(p, rows)
    lines = [json.loads(x) for x in p.read_text().splitlines()]
    assert lines[0]["record"] == "run" and lines[0]["config"]["method"] == "simclr"  # the header, once
    assert all("config" not in x and x["ctx"] == lines[0]["ctx"] for x in lines[1:])  # rows refer to it
    assert {"run_id", "config_hash", "evaluator", "metric", "value"} <= set(lines[1])
    back = read_rows([p])
    assert [(r["metric"], r["value"]) for r in back] == [(r["metric"], r["value"]) for r in rows]
    assert back[3]["config"] == rows[3]["config"] and back[3]["eval_options"] == {"k": 20, "temperature": 0.07}
    assert back[0]["schema_version"] == RESULT_SCHEMA_VERSION == 3
    full = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
    assert p.stat().st_size * 3 < len(full.encode())


def test_old_full_rows_are_read_and_compacted_without_change(tmp_path):
    """A schema-2 file of full rows (what the committed boards held) reads the same after
    compact_file, and the leaderboard built from it is the same."""
    old = []
    for r in _rows(seed=0) + _rows(seed=1, value=82.0):
        r = {k: v for k, v in r.items() if k not in ("recipe", "recipe_hash", "data_fingerprint", "evaluator_version",
                                                      "source_digest", "train_source_digest")}
        old.append({**r, "schema_version": 2})
    for seed in (0, 1):
        p = tmp_path / f"run{seed}" / "results.jsonl"
        p.parent.mkdir()
        p.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in old if r["seed"] == seed))
    before_rows = read_rows(sorted(tmp_path.glob("*/results.jsonl")))
    before_table = aggregate(load_frame(tmp_path)).to_csv()
    sizes = [compact_file(p) for p in sorted(tmp_path.glob("*/results.jsonl"))]
    assert all(after * 3 < b for b, after in sizes)
    assert read_rows(sorted(tmp_path.glob("*/results.jsonl"))) == before_rows
    assert aggregate(load_frame(tmp_path)).to_csv() == before_table
    assert before_rows[0]["schema_version"] == 2 and before_rows[0]["recipe_hash"] is None


def test_a_row_records_recipe_version_fingerprint_and_source_digest():
    recipe = {"temperature": 0.1, "optim.lr": 1e-3, "optim.weight_decay": 0.0}
    (r, *_) = _rows(recipe=recipe)
    assert r["recipe"] == recipe and r["recipe_hash"] == recipe_hash(recipe, r["config"], "cnn-small")
    assert r["evaluator_version"] == "1" and r["data_fingerprint"] == "f" * 32
    assert len(r["source_digest"]) == 16 and r["train_source_digest"] == "d" * 16


def test_the_recipe_is_part_of_a_rows_identity():
    """Two trainings of the same typed config under two defaults are two configurations."""
    a = _rows(recipe={"temperature": 0.1, "optim.lr": 1e-3, "optim.weight_decay": 0.0})[0]
    b = _rows(recipe={"temperature": 0.03, "optim.lr": 1e-3, "optim.weight_decay": 0.0})[0]
    assert a["config_hash"] == b["config_hash"] and a["train_hash"] != b["train_hash"]
    assert _rows()[0]["train_hash"] == training_hash(a["config"])  # recipe unknown: the typed config alone


def test_leaderboard_and_compare_refuse_two_versions_of_one_evaluator(tmp_path):
    for seed, version in ((0, "1"), (1, "2")):
        append_rows(tmp_path / f"a{seed}" / "results.jsonl", _rows(seed=seed, version=version))
        append_rows(tmp_path / f"b{seed}" / "results.jsonl", _rows(seed=seed, version="1", method="vicreg"))
    df = load_frame(tmp_path)
    with pytest.raises(ConfigError, match="versions 1, 2"):
        aggregate(df)
    with pytest.raises(ConfigError, match="compare: rows of evaluator 'knn' come from versions 1, 2"):
        compare(df, "simclr", "vicreg")
    same = df[df["evaluator_version"] == "1"]
    assert isinstance(aggregate(same), pd.DataFrame) and len(aggregate(same)) == 2

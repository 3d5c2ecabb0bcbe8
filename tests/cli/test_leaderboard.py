"""The leaderboard you can trust (issue #13): configuration identity, uncertainty, ties, seed-paired
compare, evaluator metric declarations (also from an outside package), the result schema and the
embedding cache key."""
import json
import math
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as st

from ssl_bench.cli import _run_seeds, main
from ssl_bench.config import RunConfig
from ssl_bench.errors import ConfigError
from ssl_bench.leaderboard import aggregate, compare, load_frame, to_markdown, write_leaderboards
from ssl_bench.registry import EVALUATORS
from ssl_bench.results import ROW_FIELDS, RESULT_SCHEMA_VERSION, append_rows, make_rows, read_rows, training_hash

KNN = {"k": 20, "temperature": 0.07}


def _write(runs, method, seed, values, *, dataset="mog2d", opts=None, knn_opts=None, evaluator="knn",
           metric="top1", status=None):
    """Result rows of one fake run: ``values`` = {metric: value} of ``evaluator``."""
    cfg = RunConfig(method=method, dataset=dataset, preset="smoke", seed=seed, method_kwargs=opts or {}).with_preset()
    run_id = cfg.run_id("mlp")
    rows = make_rows(values, evaluator=evaluator, run_id=run_id, method=method, dataset=dataset, backbone="mlp",
                     preset="smoke", epochs=1, seed=seed, config_hash=cfg.hash(), config=cfg.to_dict(),
                     device="cpu", train_seconds=1.0, eval_seconds=0.1,
                     eval_options=EVALUATORS.get(evaluator).resolved_options(knn_opts))
    if status:
        rows = [{**rows[0], "status": status, "metric": None, "value": None, "evaluator": None}]
    append_rows(runs / run_id / "results.jsonl", rows)
    return rows


def _knn_runs(runs, method, values, **kw):
    for seed, v in enumerate(values):
        _write(runs, method, seed, {"top1": v}, **kw)


# -- 1. identity ------------------------------------------------------------------------------------
def test_training_hash_ignores_only_the_seed_and_non_training_keys():
    a = RunConfig(method="byol", seed=0).with_preset().to_dict()
    assert training_hash(a) == training_hash({**a, "seed": 7, "device": "cuda", "evaluators": ["knn"]})
    assert training_hash(a) != training_hash({**a, "method_kwargs": {"ema_tau": 0.996}})
    assert training_hash(a) != training_hash({**a, "lr": 0.1})


def test_two_configs_of_one_method_are_two_rows(tmp_path):
    """Real runs: `run --num-seeds 2` twice, default simclr and --opt temperature=0.5: two rows, n = 2
    each, the second labelled with its option."""
    out, lb = tmp_path / "runs", tmp_path / "lb"
    common = ["run", "--methods", "simclr", "--dataset", "mog2d", "--preset", "smoke", "--epochs", "1",
              "--num-seeds", "2", "--evaluators", "knn", "--no-baselines", "--set", "train_subset=256",
              "--set", "precision=fp32", "--out", str(out), "--leaderboards", str(lb), "--no-progress"]
    assert main(common) == 0
    assert main(common + ["--opt", "temperature=0.5"]) == 0
    table = pd.read_csv(lb / "mog2d.csv")
    assert len(table) == 2 and (table.method == "simclr").all() and (table.n == 2).all()
    assert table.train_hash.nunique() == 2
    assert set(table.label) == {"simclr [precision=fp32, train_subset=256]",
                                "simclr [temperature=0.5, precision=fp32, train_subset=256]"}
    seeds = {r["seed"] for r in read_rows(out.glob("*/results.jsonl"))}
    assert seeds == {0, 1}


def test_option_equal_to_the_method_default_is_not_in_the_label(tmp_path):
    from ssl_bench.registry import METHODS

    default_t = METHODS.get("simclr").defaults["temperature"]
    _knn_runs(tmp_path, "simclr", [80.0], opts={"temperature": default_t})
    _knn_runs(tmp_path, "byol", [80.0], opts={"ema_tau": 0.996})
    labels = set(aggregate(load_frame(tmp_path)).label)
    assert labels == {"simclr", "byol [ema_tau=0.996]"}


# -- 2. uncertainty ---------------------------------------------------------------------------------
def test_one_seed_shows_the_value_alone_and_several_the_t_interval(tmp_path):
    _knn_runs(tmp_path, "simclr", [80.0, 82.0, 83.5])
    _knn_runs(tmp_path, "vicreg", [75.25])
    lb = tmp_path / "lb"
    write_leaderboards(tmp_path, lb)
    table = pd.read_csv(lb / "mog2d.csv").set_index("method")
    v = np.array([80.0, 82.0, 83.5])
    hw = st.t.ppf(0.975, 2) * v.std(ddof=1) / math.sqrt(3)
    assert table.loc["simclr", "knn_top1_mean"] == pytest.approx(v.mean(), abs=1e-4)
    assert table.loc["simclr", "knn_top1_std"] == pytest.approx(v.std(ddof=1), abs=1e-4)
    assert table.loc["simclr", "knn_top1_n"] == 3 and table.loc["simclr", "n"] == 3
    assert table.loc["simclr", "knn_top1_ci95"] == pytest.approx(hw, abs=1e-4)
    assert table.loc["vicreg", "knn_top1_n"] == 1 and pd.isna(table.loc["vicreg", "knn_top1_ci95"])
    md = (lb / "mog2d.md").read_text()
    assert f"| {v.mean():.2f} ± {hw:.2f} |" in md or f"| **{v.mean():.2f} ± {hw:.2f}** |" in md
    assert "| vicreg | mlp | smoke | 1 | 1 | 75.25 |" in md  # no ± for one seed
    assert "± 0.00" not in md
    assert "95% confidence interval" in md and "Student t" in md


# -- 3. ties ----------------------------------------------------------------------------------------
def test_ties_welch_and_one_seed_rows_never_marked(tmp_path):
    a, b, c = [80.0, 81.0, 82.0], [79.9, 81.1, 81.9], [70.0, 70.5, 71.0]
    _knn_runs(tmp_path, "simclr", a)
    _knn_runs(tmp_path, "vicreg", b)
    _knn_runs(tmp_path, "byol", c)
    _knn_runs(tmp_path, "dino", [99.0])  # highest value, one seed: neither best nor tied
    assert st.ttest_ind(a, b, equal_var=False).pvalue >= 0.05 > st.ttest_ind(a, c, equal_var=False).pvalue
    df = load_frame(tmp_path)
    table = aggregate(df).set_index("method")
    assert table.loc["simclr", "knn_top1_mark"] == "best"
    assert table.loc["vicreg", "knn_top1_mark"] == "tied"
    assert table.loc["byol", "knn_top1_mark"] == ""
    assert table.loc["dino", "knn_top1_mark"] == ""
    md = to_markdown(aggregate(df), "mog2d", "test", df)
    assert "| dino | mlp | smoke | 1 | 1 | 99.00 |" in md
    assert "**81.00 ± 2.48**" in md and "**80.97 ± " in md and "| 70.50 ± 1.24 |" in md
    assert "Welch" in md


def test_lower_is_better_metric_picks_the_minimum(tmp_path):
    for m, vals in (("simclr", [0.10, 0.11, 0.12]), ("vicreg", [0.50, 0.51, 0.52])):
        for s, v in enumerate(vals):
            _write(tmp_path, m, s, {"mean_cos": v}, evaluator="collapse")
    table = aggregate(load_frame(tmp_path)).set_index("method")
    assert table.loc["simclr", "collapse_mean_cos_mark"] == "best"
    assert table.loc["vicreg", "collapse_mean_cos_mark"] == ""


def test_failed_row_shows_its_status_instead_of_numbers(tmp_path):
    _knn_runs(tmp_path, "simclr", [80.0, 81.0])
    _write(tmp_path, "dsm", 0, {"top1": 0.0}, status="diverged")
    _knn_runs(tmp_path, "vicreg", [79.0])
    _write(tmp_path, "vicreg", 1, {"top1": 0.0}, status="diverged")
    df = load_frame(tmp_path)
    table = aggregate(df).set_index("method")
    assert table.loc["dsm", "n"] == 0 and table.loc["dsm", "status"] == "diverged 1/1"
    assert table.loc["vicreg", "n"] == 1 and table.loc["vicreg", "status"] == "diverged 1/2"
    md = to_markdown(aggregate(df), "mog2d", "test", df)
    assert "| dsm | mlp | smoke | 1 | 0 | diverged 1/1 | diverged 1/1 | 1 |" not in md  # no train s of a failure
    line = next(ln for ln in md.splitlines() if ln.startswith("| dsm "))
    assert "diverged 1/1" in line and "0.00" not in line


# -- 4. compare -------------------------------------------------------------------------------------
def test_compare_pairs_seeds(tmp_path, capsys):
    a, b = [80.0, 81.5, 82.0, 79.0], [79.0, 81.0, 80.5, 79.2]
    _knn_runs(tmp_path, "simclr", a)
    _knn_runs(tmp_path, "vicreg", b[:3])  # seed 3 has no partner: left out
    res = compare(load_frame(tmp_path), "simclr", "vicreg")
    m = next(x for x in res["metrics"] if x["column"] == "knn_top1")
    d = np.array(a[:3]) - np.array(b[:3])
    assert res["seeds"] == [0, 1, 2] and m["n"] == 3
    assert m["diff"] == pytest.approx(d.mean())
    assert m["p_value"] == pytest.approx(st.ttest_rel(a[:3], b[:3]).pvalue)
    hw = st.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    assert (m["ci_low"], m["ci_high"]) == (pytest.approx(d.mean() - hw), pytest.approx(d.mean() + hw))
    assert main(["compare", "simclr", "vicreg", "--runs", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metrics"][0]["diff"] == pytest.approx(d.mean()) and out["a"] == "simclr"
    assert main(["compare", "simclr", "vicreg", "--runs", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "k-NN top1" in text and f"{d.mean():+.2f}" in text


def test_compare_refuses_other_dataset_or_evaluator_settings(tmp_path, capsys):
    _knn_runs(tmp_path, "simclr", [80.0, 81.0])
    _knn_runs(tmp_path, "vicreg", [80.0, 81.0], dataset="digits")
    _knn_runs(tmp_path, "byol", [80.0, 81.0], knn_opts={"k": 10})
    _knn_runs(tmp_path, "dino", [80.0, 81.0], knn_opts={"temperature": 0.1})
    with pytest.raises(ConfigError, match="different datasets"):
        compare(load_frame(tmp_path), "simclr", "vicreg")
    for other in ("byol", "dino"):
        capsys.readouterr()
        assert main(["compare", "simclr", other, "--runs", str(tmp_path)]) == 2
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(err) == 1 and "evaluator settings of knn" in err[0]


def test_compare_one_seed_has_no_interval(tmp_path):
    _knn_runs(tmp_path, "simclr", [80.0])
    _knn_runs(tmp_path, "vicreg", [78.0])
    m = compare(load_frame(tmp_path), "simclr", "vicreg")["metrics"][0]
    assert m["diff"] == pytest.approx(2.0) and m["ci_low"] is None and m["p_value"] is None


# -- 5. evaluator metric declarations ----------------------------------------------------------------
def test_builtin_evaluators_declare_their_metrics():
    for name in EVALUATORS.names():
        cls = EVALUATORS.get(name)
        assert cls.metrics, name
        for m in cls.metrics:
            assert m.label and m.description and m.higher_is_better in (True, False, None)
        assert any(m.headline for m in cls.metrics), name
    assert EVALUATORS.get("knn").metric("top1_k50").higher_is_better is True  # a sweep entry (pattern)
    assert EVALUATORS.get("knn").metric("nonsense").higher_is_better is None
    assert EVALUATORS.resolve("default")[:3] == ["knn", "linear", "lowshot"]
    # "default" inside a list expands in place (docs/fair-evaluation.md names default,robustness)
    both = EVALUATORS.resolve("default,robustness")
    assert both == EVALUATORS.resolve("default") + ["robustness"]
    assert "robustness" not in EVALUATORS.resolve("default")
    assert EVALUATORS.resolve(["knn", "default"])[0] == "knn" and EVALUATORS.resolve(["knn", "default"]).count("knn") == 1
    assert RunConfig().evaluators == ["default"]


@pytest.fixture
def outside_evaluator(tmp_path, monkeypatch):
    """An evaluator in an outside distribution (a *.dist-info with entry_points.txt on sys.path)."""
    site = tmp_path / "site"
    (site / "outside_eval").mkdir(parents=True)
    (site / "outside_eval" / "__init__.py").write_text(textwrap.dedent('''
        import numpy as np
        from ssl_bench.evaluator import Evaluator, Metric

        class Spread(Evaluator):
            """Mean distance of test embeddings to their centroid."""
            needs_labels = False
            defaults = dict(scale=2.0)
            legend_options = ("scale",)
            preset_options = {"smoke": {"scale": 5.0}}
            metrics = (Metric("spread", "centroid spread", "", True, "mean distance to the centroid x scale",
                              headline=True),)

            def evaluate(self, emb):
                z = emb.test_x
                return {"spread": float(np.linalg.norm(z - z.mean(0), axis=1).mean() * self.options["scale"])}
    '''))
    dist = site / "outside_eval-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: outside-eval\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[ssl_bench.evaluators]\nspread = outside_eval:Spread\n")
    monkeypatch.syspath_prepend(str(site))
    EVALUATORS.reload()
    yield
    EVALUATORS.unregister("spread")
    sys.modules.pop("outside_eval", None)


def test_outside_evaluator_gets_a_column_and_a_legend_entry(outside_evaluator, tiny, tmp_path):
    from ssl_bench.pipeline import evaluate_checkpoint
    from ssl_bench.trainer import train

    from ssl_bench.pipeline import eval_options

    assert "spread" in EVALUATORS.resolve("default")  # default list built from the registry
    assert eval_options("smoke")["spread"] == {"scale": 5.0} and "spread" not in eval_options("quick")
    assert eval_options("smoke", {"spread": {"scale": 3.0}})["spread"] == {"scale": 3.0}
    runs, lb = tmp_path / "runs", tmp_path / "lb"
    res = train(tiny(epochs=1, train_subset=256), runs)
    evaluate_checkpoint(res.checkpoint, ["knn", "spread"], eval_kwargs={"spread": {"scale": 3.0}})
    write_leaderboards(runs, lb)
    table = pd.read_csv(lb / "mog2d.csv")
    assert table.loc[0, "spread_spread_mean"] > 0
    md = (lb / "mog2d.md").read_text()
    header = next(ln for ln in md.splitlines() if ln.startswith("| method"))
    assert header.split(" | ")[5:7] == ["k-NN top1", "centroid spread"]
    assert "**centroid spread** (higher is better; `spread`): mean distance to the centroid x scale" in md
    assert "`spread`: scale=3.0" in md and "`knn`: k=20, temperature=0.07" in md


# -- 6. result schema -------------------------------------------------------------------------------
def test_rows_carry_schema_options_and_training_provenance(tiny, runs):
    from ssl_bench.checkpoint import read_encoder
    from ssl_bench.pipeline import evaluate_checkpoint
    from ssl_bench.trainer import train

    res = train(tiny(epochs=1, train_subset=256), runs)
    _, meta = read_encoder(res.checkpoint)
    assert meta["schema_version"] >= 2
    rows = evaluate_checkpoint(res.checkpoint, ["knn"], eval_kwargs={"knn": {"k": 5}})
    r = rows[0]
    assert r["schema_version"] == RESULT_SCHEMA_VERSION and r["status"] == "ok"
    assert r["eval_options"]["k"] == 5 and r["eval_options"]["temperature"] == 0.07
    assert r["train_git_commit"] == meta["git_commit"] and r["train_versions"] == meta["versions"]
    assert r["git_commit"] and r["versions"]["torch"] == torch.__version__


def test_old_row_without_version_is_read(tmp_path):
    old = {"run_id": "mog2d-simclr-mlp-smoke-s0-abc", "method": "simclr", "dataset": "mog2d", "backbone": "mlp",
           "preset": "smoke", "epochs": 1, "seed": 0, "evaluator": "knn", "metric": "top1", "value": 91.0,
           "config_hash": "abc", "config": RunConfig(method="simclr", dataset="mog2d", preset="smoke").to_dict(),
           "ssl_bench_version": "0.1.0", "torch_version": "2.5", "git_commit": "aaf46b6", "device": "cpu",
           "train_seconds": 3.0, "eval_seconds": 0.1, "timestamp": "2026-01-01T00:00:00+0000", "checkpoint": ""}
    p = tmp_path / old["run_id"] / "results.jsonl"
    p.parent.mkdir()
    p.write_text(json.dumps(old) + "\n")
    (r,) = read_rows([p])
    assert r["schema_version"] == 1 and r["status"] == "ok" and r["eval_options"] == {}
    assert r["train_git_commit"] is None and r["value"] == 91.0
    table = aggregate(load_frame(tmp_path))
    assert table.loc[0, "knn_top1_mean"] == 91.0 and table.loc[0, "n"] == 1
    assert set(r) == set(old) | set(ROW_FIELDS)  # every schema field filled in, none removed


def test_rows_have_exactly_the_schema_fields():
    """ROW_FIELDS (the ResultRow schema, docs/results-schema.md) is what make_rows writes."""
    cfg = RunConfig(method="simclr", dataset="mog2d", preset="smoke").with_preset()
    (row,) = make_rows({"top1": 1.0}, evaluator="knn", run_id="r", method="simclr", dataset="mog2d",
                       backbone="mlp", preset="smoke", epochs=1, seed=0, config_hash=cfg.hash(),
                       config=cfg.to_dict(), device="cpu", train_seconds=1.0, eval_seconds=0.1)
    assert sorted(row) == sorted(ROW_FIELDS)


# -- 7. embedding cache key -------------------------------------------------------------------------
def test_cache_key_covers_digest_subsets_seed_precision_and_layer(tiny, runs):
    from ssl_bench.checkpoint import read_encoder, save_encoder
    from ssl_bench.embeddings import checkpoint_embeddings, eval_split, load_method_from_checkpoint
    from ssl_bench.trainer import load_data, train

    cfg = tiny(epochs=1, train_subset=256, eval_train_subset=300, eval_test_subset=100)
    res = train(cfg, runs)
    full = load_data(cfg)
    cpu = torch.device("cpu")
    base = eval_split(cfg.with_preset(), full)

    def cached(data=base, **kw):
        return checkpoint_embeddings(res.checkpoint, data, cpu, **kw)[3]

    assert cached() is False and cached() is True  # computed once, then reused
    other_seed = eval_split(cfg.with_preset(), full, seed=2)  # same sizes, another subset seed
    assert len(other_seed.x_train) == len(base.x_train)
    assert cached(other_seed) is False and cached(other_seed) is True
    bigger = eval_split(RunConfig(**{**cfg.with_preset().to_dict(), "eval_train_subset": 301}), full)
    assert cached(bigger) is False
    assert cached(precision="bf16") is False and cached(precision="bf16") is True
    assert cached(layer="backbone.net.0") is False and cached(layer="backbone.net.0") is True
    emb_layer = checkpoint_embeddings(res.checkpoint, base, cpu, layer="backbone.net.0")[0]
    emb = checkpoint_embeddings(res.checkpoint, base, cpu)[0]
    assert emb_layer.dim != emb.dim or not np.allclose(emb_layer.train_x, emb.train_x)
    with pytest.raises(ConfigError, match="no such sub-module"):
        checkpoint_embeddings(res.checkpoint, base, cpu, layer="nope")
    # same path, other weights: the digest changes, so the embeddings are recomputed
    method, _, meta = load_method_from_checkpoint(res.checkpoint, cpu)
    with torch.no_grad():
        for p in method.backbone.parameters():
            p.add_(0.5)
    save_encoder(res.checkpoint, method.backbone, read_encoder(res.checkpoint)[1])
    emb2, *_rest = checkpoint_embeddings(res.checkpoint, base, cpu)
    assert _rest[2] is False and not np.allclose(emb2.train_x, emb.train_x)


# -- 8. --seeds: a list or range; --num-seeds: a count ---------------------------------------------
def test_run_seeds_list_range_or_count():
    assert _run_seeds("3") == [3]  # a bare number is that one seed, as in check-collapse
    assert _run_seeds("0") == [0]
    assert _run_seeds("0-2") == [0, 1, 2]
    assert _run_seeds("0,2,5") == [0, 2, 5] and _run_seeds("5,") == [5]
    assert _run_seeds("0-2,7,1") == [0, 1, 2, 7]
    assert _run_seeds(None, 3) == [0, 1, 2] and _run_seeds(None) == [0]
    for bad in ("-1", "x", "1,x", "2-0", "", ","):
        with pytest.raises(ConfigError):
            _run_seeds(bad)
    for seeds, count in ((None, 0), ("0", 2)):
        with pytest.raises(ConfigError):
            _run_seeds(seeds, count)


def test_compare_names_one_configuration_by_label_or_train_hash(tmp_path, capsys):
    _knn_runs(tmp_path, "simclr", [80.0, 81.0])
    _knn_runs(tmp_path, "simclr", [82.0, 84.0], opts={"temperature": 0.5})
    df = load_frame(tmp_path)
    assert main(["compare", "simclr", "simclr [temperature=0.5]", "--runs", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 configurations for one seed" in err[0] and "'simclr [temperature=0.5]'" in err[0]
    res = compare(df, "simclr [temperature=0.5]", aggregate(df).set_index("label").loc["simclr", "train_hash"][:6])
    assert res["metrics"][0]["diff"] == pytest.approx(2.5)

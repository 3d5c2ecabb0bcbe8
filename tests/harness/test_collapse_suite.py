"""The collapse regression suite (``ssl-bench check-collapse``): the built-in literature cases,
the exit status when a case disagrees, user cases files (entry-point plugins, config overrides)
and the one-line errors of a malformed file."""
from __future__ import annotations

import json
import re
import sys
import textwrap
import tomllib

import numpy as np
import pytest
import torch

from ssl_bench.cli import main
from ssl_bench.collapse import Case, builtin_cases_path, judge, load_cases, quick_cases, run_case_seed, run_suite
from ssl_bench.errors import ConfigError

#: The CI run checks every built-in case on one seed (the 5-seed agreement run is
#: `ssl-bench check-collapse`, whose numbers are in docs/collapse-ci.md).
CI_SEEDS = [0]


@pytest.mark.collapse
@pytest.mark.slow
def test_builtin_suite_agrees_with_the_literature():
    cases = load_cases()
    assert len(cases) >= 12
    results = run_suite(cases, CI_SEEDS)
    bad = {r.case.name: [s.failures for s in r.seeds] for r in results if not r.ok}
    assert not bad, bad
    # the collapsed cases are really collapsed and the healthy ones really spread out
    for r in results:
        if r.case.xfail:
            continue
        for s in r.seeds:
            if r.case.expected == ["complete"]:
                assert s.metrics["collapse.std_ratio"] < 0.05 and s.metrics["collapse.mean_cos"] > 0.9
            if r.case.expected == ["ok"]:
                assert s.metrics["collapse.std_ratio"] > 0.3


def test_builtin_cases_are_facts_that_hold_no_xfail():
    """Every built-in case is expected to agree on 5/5 seeds; BYOL with tau = 0 (which never
    separated from the EMA default, Chen & He 2021 Sec. 5) is a documented non-reproduction in
    docs/collapse-ci.md, not a case."""
    cases = load_cases()
    assert not [c.name for c in cases if c.xfail]
    assert "byol-tau0-collapses" not in {c.name for c in cases}
    assert not any(c.method == "byol" and c.options.get("ema_tau") == 0.0 for c in cases)


def test_builtin_cases_file_is_package_data_and_cites_its_sources():
    text = builtin_cases_path().read_text()
    data = tomllib.loads(text)
    blocks = text.split("[[case]]")[1:]
    assert len(blocks) == len(data["case"])
    for block, case in zip(blocks, data["case"]):
        assert "#" in block, f"case {case['name']} has no source comment"


def _flip(expect):
    return "ok" if expect in ("complete", "dimensional") or expect == ["dimensional", "complete"] else "complete"


@pytest.mark.collapse
@pytest.mark.slow
def test_flipping_one_expectation_makes_check_collapse_fail(tmp_path, capsys):
    data = tomllib.loads(builtin_cases_path().read_text())
    jepa = next(c for c in data["case"] if c["method"] == "jepa")
    assert jepa["expect"] == "complete"
    text = builtin_cases_path().read_text()
    head, block = text.split(f'name = "{jepa["name"]}"')
    block, n = re.subn(r'\nexpect = "complete"', '\nexpect = "ok"', block, count=1)
    assert n == 1
    flipped = head + f'name = "{jepa["name"]}"' + block
    f = tmp_path / "flipped.toml"
    f.write_text(flipped)
    assert main(["check-collapse", "--cases", str(f), "--only", jepa["name"], "--seeds", "0"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "verdict complete != expected ok" in out
    # the same case, unflipped, passes (exit 0), with --json
    f.write_text(text)
    assert main(["check-collapse", "--cases", str(f), "--only", jepa["name"], "--seeds", "0", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["passed"] is True and res["cases"][0]["agreement"] == "1/1"
    assert res["cases"][0]["seeds"][0]["verdict"] == "complete"


USER_CASES = """
[defaults]
dataset = "mog2d"
steps = 200
seeds = [0]
[defaults.config]
batch_size = 128
lr = 0.01
backbone_kwargs = { hidden = 32, out_dim = 8 }

[[case]]
name = "acme-plain-collapses"   # my plugin without its regulariser
method = "acme-reg"
options = { regularise = false }
steps = 800
expect = "complete"

[[case]]
name = "acme-regularised-ok"
method = "acme-reg"
expect = "ok"
bounds = { "collapse.std_ratio" = { min = 0.3 }, "knn.top1" = { min = 30.0 }, "rankme.rank" = { min = 2.0 } }
"""


@pytest.fixture
def acme_plugin(tmp_path, monkeypatch):
    """A third-party method installed through an entry point: plain invariance (collapses)
    plus an optional InfoNCE regulariser."""
    from ssl_bench.registry import METHODS

    pkg = tmp_path / "site" / "acme_reg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "plugin.py").write_text(textwrap.dedent('''
        from ssl_bench import losses
        from ssl_bench.method import Method

        class AcmeReg(Method):
            defaults = dict(regularise=True)

            def training_step(self, views):
                z1, z2 = (self.backbone(v) for v in views)
                loss = losses.squared_distance(z1, z2)
                if self.hp.regularise:
                    loss = losses.info_nce(z1, z2, 0.2)
                return loss, {}
    '''))
    dist = tmp_path / "site" / "acme_reg-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-reg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[ssl_bench.methods]\nacme-reg = acme_reg.plugin:AcmeReg\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    METHODS.reload()
    yield
    METHODS.unregister("acme-reg")
    sys.modules.pop("acme_reg.plugin", None)
    sys.modules.pop("acme_reg", None)


@pytest.mark.slow
def test_user_cases_file_with_an_entry_point_plugin(acme_plugin, tmp_path, capsys):
    f = tmp_path / "my_cases.toml"
    f.write_text(USER_CASES)
    cases = load_cases(f)
    assert [c.evaluators for c in cases] == [["collapse"], ["collapse", "knn", "rankme"]]
    assert cases[0].config["backbone_kwargs"] == {"hidden": 32, "out_dim": 8}  # defaults are merged
    assert main(["check-collapse", "--cases", str(f)]) == 0
    out = capsys.readouterr().out
    assert "acme-plain-collapses" in out and "acme-regularised-ok" in out and "2/2 cases agree" in out
    # a bound that cannot hold makes the suite fail, with the reason printed
    f.write_text(USER_CASES.replace('"knn.top1" = { min = 30.0 }', '"knn.top1" = { min = 100.5 }'))
    assert main(["check-collapse", "--cases", str(f), "--only", "acme-regularised-ok"]) == 1
    assert "knn.top1=" in capsys.readouterr().out


def test_represent_a_head_and_config_overrides(tmp_path):
    """``represent = "projector"`` judges the head output; config overrides reach the trainer."""
    f = tmp_path / "c.toml"
    f.write_text(textwrap.dedent('''
        [[case]]
        name = "vicreg-tiny"
        method = "vicreg"
        dataset = "mog2d"
        steps = 20
        seeds = [3]
        represent = "projector"
        options = { proj_hidden_dim = 16, proj_dim = 12 }
        config = { batch_size = 64, backbone_kwargs = { out_dim = 8 } }
        bounds = { "rankme.rank" = { min = 1.0 } }
    '''))
    (r,) = run_suite(load_cases(f), workdir=tmp_path / "runs")
    assert r.seeds[0].seed == 3
    assert 1.0 <= r.seeds[0].metrics["rankme.rank"] <= 12.0
    assert r.seeds[0].metrics["rankme.rank_ratio"] == pytest.approx(r.seeds[0].metrics["rankme.rank"] / 12)
    cfg = json.loads(next((tmp_path / "runs" / "vicreg-tiny").glob("*/config.json")).read_text())
    assert cfg["batch_size"] == 64 and cfg["backbone_kwargs"] == {"out_dim": 8} and cfg["seed"] == 3
    assert cfg["epochs"] == 1  # 20 steps of 64 out of 4096 samples: one epoch
    f.write_text(f.read_text().replace('represent = "projector"', 'represent = "nohead"'))
    with pytest.raises(ConfigError, match="has no head module 'nohead'"):
        run_suite(load_cases(f), workdir=tmp_path / "runs2")


def test_represent_a_sub_module_of_a_head(tiny, runs):
    """``represent = "projector.net.N"`` judges that layer's output inside the head's forward."""
    from ssl_bench.collapse import head_embeddings
    from ssl_bench.trainer import load_data, train

    cfg = tiny(method="simsiam", epochs=1, method_kwargs=dict(proj_hidden_dim=16, proj_dim=12, pred_hidden_dim=4))
    data = load_data(cfg)
    res = train(cfg, runs, data=data)
    full = head_embeddings(cfg, data, res.run_dir, "projector")
    pre_bn = head_embeddings(cfg, data, res.run_dir, "projector.net.6")  # last Linear, before the output BN
    hidden = head_embeddings(cfg, data, res.run_dir, "projector.net.0")
    assert full.train_x.shape[1] == pre_bn.train_x.shape[1] == 12 and hidden.train_x.shape[1] == 16
    # the affine-free output BN (eval mode) is (x - running_mean) / sqrt(running_var + eps) of the captured layer
    bn = torch.load(res.run_dir / "checkpoints" / "resume.pt", weights_only=True)["method"]
    mean, var = bn["projector.net.7.running_mean"].numpy(), bn["projector.net.7.running_var"].numpy()
    assert np.allclose((pre_bn.test_x - mean) / np.sqrt(var + 1e-5), full.test_x, atol=1e-4)
    with pytest.raises(ConfigError, match="has no sub-module 'net.9'.*projector.net.6"):
        head_embeddings(cfg, data, res.run_dir, "projector.net.9")


def test_judge_verdicts_and_bounds():
    m = {"collapse.verdict_code": 1.0, "collapse.std_ratio": 0.4, "rankme.rank": 3.0}
    assert judge(Case("a", "jepa", expect=["dimensional", "complete"]), m) == ("dimensional", [])
    got, fails = judge(Case("a", "jepa", expect="ok"), m)
    assert got == "dimensional" and fails == ["verdict dimensional != expected ok"]
    _, fails = judge(Case("a", "jepa", bounds={"rankme.rank": {"min": 2, "max": 2.5}}), m)
    assert fails == ["rankme.rank=3 > max 2.5"]
    _, fails = judge(Case("a", "jepa", bounds={"knn.top1": {"min": 50}}), m)
    assert len(fails) == 1 and "knn.top1 was not computed" in fails[0]


@pytest.mark.parametrize("text,msg", [
    ("[[case]\nname=", "is not valid TOML"),
    ("", "no cases"),
    ("[[case]]\nmethod = 'jepa'\nexpect = 'complete'", "'name' (a non-empty string) is required"),
    ("[[case]]\nname = 'a'\nmethod = 'jepa'", "give 'expect'"),
    ("[[case]]\nname = 'a'\nmethod = 'jepa'\nexpect = 'collapsed'", "expect must be one of ok, dimensional"),
    ("[[case]]\nname = 'a'\nmethod = 'jepa'\nexpect = 'ok'\nstep = 3", "unknown key(s) ['step']"),
    ("[[case]]\nname = 'a'\nmethod = 'jepa'\nexpect = 'ok'\nseeds = []", "seeds must be a non-empty list"),
    ("[[case]]\nname = 'a'\nmethod = 'jepa'\nexpect = 'ok'\nconfig = { lr = 'fast' }", "'lr' must be a number"),
    ("[[case]]\nname = 'a'\nmethod = 'jepa'\nexpect = 'ok'\nconfig = { seed = 1 }", "config may not set ['seed']"),
    ("[[case]]\nname = 'a'\nmethod = 'jepa'\nbounds = { rank = { min = 1 } }", "must be 'evaluator.metric'"),
    ("[[case]]\nname = 'a'\nmethod = 'jepa'\nbounds = { 'knn.top1' = { above = 1 } }", "with 'min' and/or 'max'"),
    ("[[case]]\nname = 'a'\nmethod = 'jepa'\nexpect = 'ok'\n[[case]]\nname = 'a'\nmethod = 'jepa'\nexpect = 'ok'",
     "duplicate case name"),
    ("[defaults]\nexpect = 'ok'\n[[case]]\nname = 'a'\nmethod = 'jepa'", "unknown key(s) ['expect'] in [defaults]"),
    ("[[case]]\nname = 'a'\nmethod = 'jepa'\nexpect = 'ok'\ncheck_every = -1", "check_every must be an integer >= 0"),
    ("[[case]]\nname = 'a'\nmethod = 'jepa'\nexpect = 'ok'\nsettle = 0", "settle must be a positive integer"),
    ("[[case]]\nname = 'a'\nmethod = 'jepa'\nexpect = 'ok'\nquick = 1", "quick must be true or false"),
    ("[defaults]\nquick = true\n[[case]]\nname = 'a'\nmethod = 'jepa'", "unknown key(s) ['quick'] in [defaults]"),
])
def test_malformed_cases_file_is_one_line_error(tmp_path, capsys, text, msg):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    assert main(["check-collapse", "--cases", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ssl-bench: error:") and msg in err and "\n" not in err


def test_missing_cases_file_and_unknown_names(tmp_path, capsys):
    assert main(["check-collapse", "--cases", str(tmp_path / "nope.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["check-collapse", "--only", "no-such-case"]) == 2
    assert "no case(s) ['no-such-case']" in capsys.readouterr().err
    f = tmp_path / "c.toml"
    f.write_text("[[case]]\nname = 'a'\nmethod = 'no-such-method'\nexpect = 'ok'\nsteps = 1\n")
    assert main(["check-collapse", "--cases", str(f)]) == 2
    assert "unknown method 'no-such-method'" in capsys.readouterr().err


def test_docs_example_cases_file_parses(tmp_path):
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "collapse-ci.md").read_text()
    toml_text = re.search(r"```toml\n(.*?)```", doc, re.S).group(1)
    f = tmp_path / "my_cases.toml"
    f.write_text(toml_text)
    a, b = load_cases(f)
    assert a.evaluators == ["collapse", "knn", "rankme"] and a.seeds == [0, 1, 2] and a.represent == "backbone"
    assert b.options == {"reg_weight": 0.0} and b.config["lr"] == 0.01 and b.config["batch_size"] == 128
    assert b.expected == ["dimensional", "complete"] and b.represent == "projector"


def test_usable_cores_respects_affinity_and_quota(monkeypatch, tmp_path):
    import os

    from ssl_bench import collapse

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    real_read = collapse.Path.read_text

    def fake_read(self, *a, **k):
        if str(self) == "/sys/fs/cgroup/cpu.max":
            return "150000 100000\n"  # 1.5 CPUs
        return real_read(self, *a, **k)

    monkeypatch.setattr(collapse.Path, "read_text", fake_read)
    assert collapse.usable_cores() == 1
    monkeypatch.setattr(collapse.Path, "read_text", lambda self, *a, **k: "max 100000\n"
                        if str(self) == "/sys/fs/cgroup/cpu.max" else real_read(self, *a, **k))
    assert collapse.usable_cores() == 4


def test_quick_runs_one_seed_of_cases_that_cover_every_method_and_both_kinds_of_fact():
    cases = load_cases()
    quick = quick_cases(cases)
    assert 0 < len(quick) < len(cases)
    assert all(len(c.seeds) == 1 and c.seeds[0] == full.seeds[0]
               for c in quick for full in cases if full.name == c.name)
    assert {c.method for c in quick} == {c.method for c in cases}  # every method family
    assert any("ok" in c.expected for c in quick) and any("ok" not in c.expected for c in quick)
    assert not any(c.xfail for c in quick)  # a PR check that runs only what can fail
    # a file that marks nothing quick: every case, on its first seed
    plain = [Case("a", "jepa", expect="complete", seeds=[3, 4]), Case("b", "simclr", expect="ok")]
    assert [(c.name, c.seeds) for c in quick_cases(plain)] == [("a", [3]), ("b", [0])]


def test_only_collapse_facts_judged_on_their_verdict_stop_early():
    assert Case("a", "jepa", expect="complete", check_every=100).stops_early
    assert Case("a", "jepa", expect=["dimensional", "complete"], check_every=100).stops_early
    assert not Case("a", "jepa", expect="complete").stops_early  # check_every 0: the whole budget
    assert not Case("a", "simclr", expect="ok", check_every=100).stops_early  # a random init is ok too
    assert not Case("a", "jepa", expect=["ok", "complete"], check_every=100).stops_early
    assert not Case("a", "lejepa", expect="complete", check_every=100,
                    bounds={"collapse.sigreg": {"max": 4.0}}).stops_early
    ok_cases = [c for c in load_cases() if "ok" in c.expected or c.bounds]
    assert ok_cases and not any(c.stops_early for c in ok_cases)


QUICK_CASES = """
[defaults]
dataset = "mog2d"
steps = 40
seeds = [5, 6]
[defaults.config]
batch_size = 128
backbone_kwargs = { hidden = 16, out_dim = 8 }

[[case]]
name = "a-quick"
method = "jepa"
quick = true
bounds = { "collapse.std_ratio" = { min = 0.0 } }

[[case]]
name = "b-not-quick"
method = "simclr"
bounds = { "collapse.std_ratio" = { min = 0.0 } }
"""


def test_check_collapse_quick_runs_the_marked_cases_on_one_seed(tmp_path, capsys):
    f = tmp_path / "c.toml"
    f.write_text(QUICK_CASES)
    assert main(["check-collapse", "--cases", str(f), "--quick", "--jobs", "1", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert [(c["case"], [s["seed"] for s in c["seeds"]]) for c in res["cases"]] == [("a-quick", [5])]
    assert res["cases"][0]["seeds"][0]["steps"] == 48  # whole epochs: 3 x 16 (2048-sample subset, batch 128)
    assert res["cases"][0]["seeds"][0]["checks"] == []  # a case with bounds is not checked while it trains


@pytest.mark.collapse
def test_an_early_stopped_case_gives_the_full_budget_verdict():
    """jepa-complete, seed 0: stopping once the verdict settled gives the verdict of the whole
    budget, from fewer steps, and the run up to the stop is exactly the full run's beginning."""
    case = next(c for c in load_cases() if c.name == "jepa-complete")
    assert case.stops_early
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        early = run_case_seed(case, 0, Path(d) / "early", {}, early_stop=True)
        full = run_case_seed(case, 0, Path(d) / "full", {}, early_stop=False)
    assert early.agrees and full.agrees and early.verdict == full.verdict == "complete"
    assert early.steps < full.steps == case.steps
    assert full.checks[:len(early.checks)] == early.checks  # same trajectory up to the stop
    assert [v for _, v in early.checks[-case.settle:]] == ["complete"] * case.settle

"""#12 item 8: every built-in method declares its paper recipe, every deviation has a reason, and
docs/fidelity.md is the table generated from those declarations."""
from pathlib import Path

from ssl_bench import fidelity, optim
from ssl_bench.fidelity import PaperRecipe, builtin_methods, check, render_markdown
from ssl_bench.method import Method

DOC = Path(__file__).resolve().parents[2] / "docs" / "fidelity.md"


def test_every_builtin_method_declares_its_paper_recipe_without_problems():
    methods = builtin_methods()
    assert len(methods) >= 19
    problems = [msg for _, cls in methods for msg in check(cls)]
    assert problems == []


def test_a_method_without_declaration_is_reported():
    class NoPaper(Method):
        registry_name = "no-paper"
        defaults = dict(proj_dim=128)

    assert check(NoPaper) == ["no-paper: no `paper = PaperRecipe(...)` declaration"]


def test_unexplained_deviation_unknown_option_and_missing_optim_are_reported():
    class Bad(Method):
        registry_name = "bad"
        defaults = dict(proj_dim=128, temperature=0.1)
        paper = PaperRecipe(source="x", heads="none", views="v", hparams=dict(temperature=0.5, tau=0.9),
                            optim=dict(optimizer="adamw", lr=2e-3), deviations={"heads": "why"})

    msgs = check(Bad)
    assert any("'tau' is not an option" in m for m in msgs)
    assert any("lacks 'weight_decay'" in m for m in msgs)
    assert any("temperature differs" in m for m in msgs)
    assert not any("heads" in m for m in msgs)  # heads differ (derived 'proj_dim=128') but have a reason


def test_ours_heads_are_derived_from_the_defaults():
    from ssl_bench.registry import METHODS

    assert fidelity.our_heads(METHODS.get("simclr")) == "proj_hidden_dim=512, proj_dim=128"


def test_docs_fidelity_md_is_the_generated_table():
    text = render_markdown()
    assert DOC.read_text() == text, "docs/fidelity.md is stale: python -m ssl_bench.fidelity --write docs/fidelity.md"
    for name, _ in builtin_methods():
        assert f"## {name}\n" in text
    assert "never on the test set" in text


def test_harness_optim_matches_the_optimiser_defaults():
    from ssl_bench.config import RunConfig

    assert RunConfig.optimizer == fidelity.HARNESS_OPTIM["optimizer"]
    assert fidelity.HARNESS_OPTIM == {"optimizer": "adamw", "lr": optim.DEFAULT_LR["adamw"],
                                      "weight_decay": optim.DEFAULT_WD["adamw"]}


def test_the_module_command_prints_the_doc_and_finds_no_problems():
    # run as __main__, the module must check the PaperRecipe class the method files import
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "ssl_bench.fidelity"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout == DOC.read_text()

"""Built-in evaluators, installed as ``ssl_bench.evaluators``: one module per evaluator.

An evaluator reads cached embeddings (:class:`ssl_bench.embeddings.Embeddings`) and returns
``{metric: value}``; the harness turns that into result rows with provenance. Each evaluator
declares its metrics (``metrics``: :class:`ssl_bench.evaluator.Metric`), its column ``order``,
the options its legend prints and its per-preset budgets; the leaderboard is built from these.
"""

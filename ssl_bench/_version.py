"""The version of ssl-bench, apart from the package so that modules the package imports lazily
(``ssl_bench.evaluate``) read it without importing the package (tests/harness/test_import_cycles.py)."""

__version__ = "0.1.0"

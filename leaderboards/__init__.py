"""The committed reference boards (CSV), installed as package data ``ssl_bench.leaderboards``:
``ssl-bench run`` checks its rows against them (ssl_bench/reproduce.py)."""

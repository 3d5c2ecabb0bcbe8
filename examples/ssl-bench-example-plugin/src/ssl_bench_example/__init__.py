"""Example third-party ssl-bench plugin: the TiCo method (see tico.py)."""

"""Constants and helpers shared by the benchmark files (imported as ``benchutil``)."""
import os

ROUNDS = int(os.environ.get("SSL_BENCH_BENCH_ROUNDS", "3"))
BATCH = 256


def per_second(benchmark, items: int, name: str = "img_per_s") -> float:
    """Throughput from the benchmark's median round time, stored in ``extra_info``."""
    med = benchmark.stats.stats.median
    benchmark.extra_info[name] = items / med
    return items / med

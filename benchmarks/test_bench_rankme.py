"""RankMe on 25,600 x 2048 embeddings (the paper's sample size, a ResNet-50-sized dimension)."""
import numpy as np

from ssl_bench.evaluators.rankme import rankme


def test_rankme_25600x2048(benchmark):
    benchmark.group = "rankme"
    rng = np.random.default_rng(0)
    z = (rng.standard_normal((25_600, 64), dtype=np.float32) @ rng.standard_normal((64, 2048), dtype=np.float32)
         + 0.01 * rng.standard_normal((25_600, 2048), dtype=np.float32))
    r = benchmark.pedantic(lambda: rankme(z), rounds=1, iterations=1, warmup_rounds=0)
    # 64 strong directions + weak isotropic noise: the rank sits just above 64, far below 2048
    assert 64 <= r < 200

"""I-JEPA's multi-block masks (views.multiblock_masks): the context keeps >= min_keep patches."""
import pytest
import torch

from ssl_bench.errors import ConfigError
from ssl_bench.views import multiblock_masks


@pytest.mark.parametrize("grid,min_keep", [((4, 4), 4), ((7, 7), 10)])
def test_context_keeps_min_keep_patches_over_200_batches(grid, min_keep):
    # before the fix the context was cut to the batch minimum: on the 4 x 4 grid (7-px patches on
    # 28 x 28) 60 % of the batches kept only 1-3 context patches
    g = torch.Generator().manual_seed(0)
    sizes, overlap, total = [], 0, 0
    for _ in range(200):
        kw = {} if min_keep == 4 else {"min_keep": min_keep}  # 4: the default
        ctx, tgt = multiblock_masks(32, grid, g, num_targets=4, **kw)
        assert ctx.shape[0] == 32 and tgt.shape[:2] == (32, 4)
        sizes.append(ctx.shape[1])
        for c, t in zip(ctx, tgt):
            assert len(set(c.tolist())) == len(c)  # no duplicates
            overlap += len(set(c.tolist()) & set(t.flatten().tolist()))
            total += len(c)
    assert min(sizes) >= min_keep, min(sizes)
    if grid == (7, 7):  # on a 49-token grid the targets almost never have to be dropped
        assert overlap / total < 0.01


def test_min_keep_outside_the_grid_is_a_config_error():
    with pytest.raises(ConfigError, match="min_keep"):
        multiblock_masks(2, (4, 4), min_keep=17)

import numpy as np
import torch

from medgen_ray.train.loop import ShardCache, bucket_batches
from medgen_ray.train.precompute import tensor_bytes


class FakeShard:
    """Speaks the DataIterator.iter_batches call the loop makes; counts passes."""

    def __init__(self, n):
        self.n, self.passes = n, 0

    def iter_batches(self, **_):
        self.passes += 1
        for i in range(self.n):
            yield {"clip_id": np.array([f"c{i}"], dtype=object), "blob": np.array([b"x" * 100], dtype=object)}


def test_cache_serves_later_epochs_in_seeded_orders():
    shard, cache = FakeShard(10), ShardCache(10_000, 4, seed=0, rank=0)
    first = [r["clip_id"] for r in cache.epoch_rows(shard, 0)]
    second = [r["clip_id"] for r in cache.epoch_rows(shard, 1)]
    third = [r["clip_id"] for r in cache.epoch_rows(shard, 2)]
    assert shard.passes == 1
    assert sorted(first) == sorted(second) == sorted(third) == [f"c{i}" for i in range(10)]
    assert second != third


def test_cache_off_when_too_big_or_pass_incomplete():
    shard, cache = FakeShard(10), ShardCache(500, 4, 0, 0)  # 10 rows x 100 bytes > 500
    list(cache.epoch_rows(shard, 0))
    list(cache.epoch_rows(shard, 1))
    assert shard.passes == 2
    shard, cache = FakeShard(10), ShardCache(10_000, 4, 0, 0)
    it = cache.epoch_rows(shard, 0)
    next(it)
    next(it)  # the epoch ends early (another worker ran out): nothing cached
    list(cache.epoch_rows(shard, 1))
    assert shard.passes == 2


def _row(cid, bucket):
    lat, ls = tensor_bytes(torch.zeros(4, 1, 2, 2))
    txt, ts = tensor_bytes(torch.zeros(3, 8))
    pooled, ps = tensor_bytes(torch.zeros(5))
    return {"clip_id": cid, "bucket": bucket, "latent": lat, "latent_shape": ls, "text_embeds": txt,
            "text_shape": ts, "pooled": pooled, "pooled_shape": ps, "dtype": "float32"}


def test_bucket_batches_group_by_bucket_and_skip_consumed():
    rows = [_row("a", "A"), _row("b", "B"), _row("c", "A"), _row("d", "B"), _row("e", "A")]
    out = [ids for ids, _ in bucket_batches(iter(rows), 2, skip={"c"})]
    assert out == [["b", "d"], ["a", "e"]]

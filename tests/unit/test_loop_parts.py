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


def test_validation_loads_the_pipeline_once_and_uses_the_live_transformer(tmp_path, monkeypatch):
    """Validation keeps the VAE and text encoders after the first load; each call generates
    with the transformer as it is then."""
    import av
    import torch

    import medgen_ray.models.registry as registry
    from medgen_ray.config import load_config
    from medgen_ray.models.hunyuan import build_tiny_components
    from medgen_ray.train import outputs

    loads = []
    real = registry.load_model
    monkeypatch.setattr(registry, "load_model", lambda *a, **k: loads.append(a) or real(*a, **k))
    monkeypatch.setattr(outputs, "_VALIDATION_PIPES", {})
    cfg = load_config(None, ["train.model=hunyuan_video/tiny", "train.validation.height=32",
                             "train.validation.width=48", "train.validation.num_frames=5",
                             "train.validation.steps=2"]).train
    transformer = build_tiny_components()["transformer"]

    def frames(path):
        with av.open(path) as c:
            return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]).astype(int)

    a = frames(outputs.validate(cfg, transformer, 1, str(tmp_path))[0])
    b = frames(outputs.validate(cfg, transformer, 2, str(tmp_path))[0])
    assert len(loads) == 1 and np.array_equal(a, b)  # same weights, same seed: same video
    with torch.no_grad():
        for p in transformer.parameters():
            p.add_(0.5 * torch.randn_like(p))
    c = frames(outputs.validate(cfg, transformer, 3, str(tmp_path))[0])
    assert len(loads) == 1 and np.abs(c - a).mean() > 1.0

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from medgen_ray.config import BucketConfig, ConfigError, load_config
from medgen_ray.train.precompute import bytes_tensor, caption_of, check_shards, choose_bucket, collate, tensor_bytes

B = [BucketConfig(frames=33, height=544, width=960), BucketConfig(frames=33, height=960, width=544),
     BucketConfig(frames=33, height=720, width=720), BucketConfig(frames=17, height=544, width=960)]


def test_bucket_by_aspect_then_length():
    assert choose_bucket(B, 1280, 720, 100).height == 544 and choose_bucket(B, 1280, 720, 100).frames == 33
    assert choose_bucket(B, 720, 1280, 100).width == 544
    assert choose_bucket(B, 640, 640, 100).width == 720
    assert choose_bucket(B, 1280, 720, 20).frames == 17  # too short for 33: the shorter landscape bucket
    assert choose_bucket(B, 1280, 720, 10) is None


def test_bucket_frames_must_be_4k_plus_1_and_sides_multiple_of_16():
    with pytest.raises(ConfigError, match="4k\\+1"):
        load_config(None, ["precompute.buckets=[{frames: 32, height: 64, width: 64}]"])
    with pytest.raises(ConfigError, match="width=100"):
        load_config(None, ["precompute.buckets=[{frames: 33, height: 64, width: 100}]"])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_tensor_bytes_round_trip(dtype):
    t = torch.randn(2, 3, 4).to(dtype)
    raw, shape = tensor_bytes(t)
    name = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}[dtype]
    assert torch.equal(bytes_tensor(raw, shape, name), t)


def test_collate_pads_text_and_masks():
    items = [{"latent": torch.zeros(4, 3, 2, 2), "text_embeds": torch.ones(n, 8), "pooled": torch.zeros(5)}
             for n in (3, 5)]
    out = collate(items)
    assert out["text_embeds"].shape == (2, 5, 8) and out["latent"].shape == (2, 4, 3, 2, 2)
    assert out["text_mask"].sum(1).tolist() == [3, 5]
    assert out["text_embeds"][0, 3:].abs().sum() == 0
    assert collate(items[:1])["text_mask"].all()  # batch 1: nothing padded


def test_caption_fallback_and_missing():
    cfg = load_config().precompute
    assert caption_of({"caption_detailed": "", "caption_brief": "endoscopy"}, cfg) == "endoscopy"
    with pytest.raises(Exception, match="caption_detailed"):
        caption_of({"caption_detailed": None}, cfg)


def test_bad_shard_paths_fail_with_clear_messages(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        check_shards(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="medgen precompute"):
        check_shards(str(tmp_path / "empty"))
    (tmp_path / "bad" / "shards").mkdir(parents=True)
    (tmp_path / "bad" / "shards" / "part-1.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match="part-1.parquet"):
        check_shards(str(tmp_path / "bad"))
    (tmp_path / "cols" / "shards").mkdir(parents=True)
    pq.write_table(pa.table({"clip_id": ["a"], "bucket": ["9x32x32"]}), tmp_path / "cols" / "shards" / "part-2.parquet")
    with pytest.raises(ValueError, match="part-2.parquet: missing columns"):
        check_shards(str(tmp_path / "cols"))


def test_train_refuses_bad_data_before_starting_ray(tmp_path, monkeypatch):
    """No worker (and no GPU) is touched when the data is bad: init_ray must not be reached."""
    from medgen_ray.core import dataflow
    from medgen_ray.runner import run_train

    monkeypatch.setattr(dataflow, "init_ray", lambda *_: pytest.fail("Ray started before the data was checked"))
    app = load_config(None, [f"train.data={tmp_path / 'missing'}"])
    with pytest.raises(FileNotFoundError, match="train.data"):
        run_train(app)


def test_precompute_loads_no_transformer(tmp_path):
    """The stage uses the VAE and the text encoders only: it loads no transformer (13 B in
    HunyuanVideo) from a saved pipeline, and encodes exactly as the full pipeline does."""
    import numpy as np
    import torch

    from medgen_ray.config import load_config
    from medgen_ray.models.registry import load_model, pull_weights
    from medgen_ray.train.precompute import PrecomputeStage

    folder = pull_weights("hunyuan_video/tiny", str(tmp_path))
    cfg = load_config(None, [f"precompute.weights={folder}", "precompute.dtype=fp32"]).precompute
    stage = PrecomputeStage(cfg, device="cpu")
    stage.setup()
    assert stage.pipe.transformer is None
    full = load_model("hunyuan_video/tiny", folder, "cpu", kind="video")
    assert full.transformer is not None
    frames = np.random.default_rng(0).integers(0, 255, (9, 32, 32, 3)).astype(np.uint8)
    ours = stage.encode(frames, "an endoscopic view")
    stage.pipe = full
    theirs = stage.encode(frames, "an endoscopic view")
    assert ours.keys() == theirs.keys() == {"latent", "text_embeds", "pooled"}
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key])


def test_precompute_without_resume_refuses_an_output_that_holds_shards(tmp_path, monkeypatch):
    """Issue 22, bug 2: with precompute.resume=false the guard could never fire (the done set was
    only read when resuming), so a second run wrote every clip again beside the first. Now it is
    refused before Ray starts, naming the field; with resume the same output goes on."""
    from medgen_ray.core import dataflow
    from medgen_ray.runner import run_precompute
    from medgen_ray.schema import CLIP_ID, SHARDS

    (tmp_path / "ds" / "manifest").mkdir(parents=True)
    pq.write_table(pa.table({CLIP_ID: ["v1_0-6"]}), tmp_path / "ds" / "manifest" / "part-00000.parquet")
    (tmp_path / "out" / SHARDS).mkdir(parents=True)
    pq.write_table(pa.table({CLIP_ID: ["v1_0-6"]}), tmp_path / "out" / SHARDS / "part-00000.parquet")
    monkeypatch.setattr(dataflow, "init_ray", lambda *_: pytest.fail("Ray started although the output was refused"))
    base = [f"precompute.dataset={tmp_path / 'ds'}", f"precompute.output={tmp_path / 'out'}"]
    with pytest.raises(FileExistsError, match=r"holds shards of 1 clips and precompute.resume is false"):
        run_precompute(load_config(None, base + ["precompute.resume=false"]))

    class Started(Exception):
        pass

    def start(*_):
        raise Started

    monkeypatch.setattr(dataflow, "init_ray", start)
    with pytest.raises(Started):  # resuming passes the guard and starts Ray
        run_precompute(load_config(None, base + ["precompute.resume=true"]))

"""One video over two CPU ranks (gloo, 127.0.0.1) equals one process, for every family's tiny
twin, through the same calls a multi-rank Serve replica makes (serve.generator.build_pipeline and
generate_request); the degree checks name the numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch.multiprocessing as mp

from medgen_ray.core.ports import free_port
from tests.parallel_ranks import generate_ranks

MODELS = ["hunyuan_video/tiny", "hunyuan_video_1_5/tiny", "wan2.1-t2v-1.3b/tiny", "wan2.2-ti2v-5b/tiny"]


def test_ulysses_two_ranks_equal_one_process_for_every_family(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    generate_ranks(0, 1, 0, MODELS, str(one))
    mp.spawn(generate_ranks, args=(2, free_port(), MODELS, str(two)), nprocs=2, join=True)
    for model in MODELS:
        name = model.replace("/", "_")
        a, b = np.load(one / f"{name}.npy"), np.load(two / f"{name}.npy")
        assert a.shape == b.shape == (9, 32, 64, 3)
        # 1e-5: the attention's sums run in another order over two ranks (float32; measured <= 3e-6)
        assert np.abs(a - b).max() <= 1e-5, (model, float(np.abs(a - b).max()))
        assert a.std() > 0.01  # a real picture, not a constant both sides agree on
        # both ranks took every step together
        assert (two / f"{name}.rank0.steps").read_text() == (two / f"{name}.rank1.steps").read_text() == "1,2,3"


def test_degrees_are_checked_against_the_model():
    from medgen_ray.config import ConfigError, ServeConfig, load_config
    from medgen_ray.models.parallel import Degrees, degree_problems, placement_problems

    assert degree_problems("hunyuan_video", Degrees(8), where="p") == []  # 24 heads
    assert degree_problems("hunyuan_video", Degrees(5), where="p") == [
        "p.ulysses=5: must divide HunyuanVideo's 24 attention heads"]
    assert "HunyuanVideo-1.5's attention masks its text padding" in degree_problems(
        "hunyuan_video_1_5", Degrees(1, 2), where="p")[0]
    assert "CheckpointError" in degree_problems("wan2.1-t2v-14b", Degrees(1, 2), where="p", training=True)[0]
    assert degree_problems("wan2.1-t2v-14b", Degrees(4, 2), where="p") == []  # 40 heads, ring allowed
    with pytest.raises(ConfigError, match=r"serve: .*generator.parallel.ulysses=3: must divide HunyuanVideo.s 2 "):
        load_config(None, ["serve.generator.parallel.ulysses=3"])
    with pytest.raises(ValueError, match="ring attention needs a GPU"):
        ServeConfig(model="wan2.1-t2v-1.3b/tiny", generator={"num_gpus": 0, "parallel": {"ring": 2}})
    node = {"CPU": 16.0, "GPU": 8.0}
    assert placement_problems(8, 1, 1, [node], where="g") == []
    assert placement_problems(16, 1, 1, [node, node], where="g") == [
        "g: 16 ranks x 1 GPU = 16 GPU on one node (a replica's ranks share a node), the largest node has 8"]
    assert placement_problems(4, 1, 1, [{"CPU": 16.0, "GPU": 2.0}], where="g") == [
        "g: 4 ranks x 1 GPU = 4 GPU, the cluster has 2"]


def test_one_context_parallel_training_step_equals_one_process(tmp_path):
    """Ulysses-2 training step per family (gradient checkpointing on, the text padded to an even
    split where the family splits it): the loss equals one process, and the two ranks' LoRA
    gradients sum to one process's (each rank's gradient is its tokens' share; the loop scales the
    loss by the degree so that DDP's average over all ranks is right)."""
    import torch

    from tests.parallel_ranks import train_step_ranks

    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    train_step_ranks(0, 1, 0, MODELS, str(one), True)
    mp.spawn(train_step_ranks, args=(2, free_port(), MODELS, str(two), True), nprocs=2, join=True)
    for model in MODELS:
        name = model.replace("/", "_")
        a = torch.load(one / f"{name}.rank0.pt")
        r0, r1 = torch.load(two / f"{name}.rank0.pt"), torch.load(two / f"{name}.rank1.pt")
        assert r0["loss"] == pytest.approx(a["loss"], abs=1e-6) and r1["loss"] == pytest.approx(a["loss"], abs=1e-6)
        scale = max(g.abs().max() for g in a["grads"].values())
        # 1e-4 of the largest gradient: float32 sums in another order over two ranks (measured <= 2.6e-5)
        worst = max(float((g - r0["grads"][k] - r1["grads"][k]).abs().max()) for k, g in a["grads"].items())
        assert worst <= 1e-4 * scale, (model, worst / scale)
        one_rank = max(float((g - r0["grads"][k]).abs().max()) for k, g in a["grads"].items())
        assert one_rank > 0.1 * scale  # a rank alone holds only its share (the test can tell)


def test_offline_evaluation_refuses_a_multi_rank_generator(tmp_path):
    """Offline Med-VBench generation has one device per actor: asking it for two ranks is an error
    naming the fix (the service with evaluate.url), before Ray starts."""
    import sys

    from medgen_ray.config import load_config
    from medgen_ray.evaluate.job import run_evaluate

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("an endoscopic view\n")
    app = load_config(None, [f"evaluate.prompts={prompts}", f"evaluate.output={tmp_path / 'out'}",
                             "serve.generator.parallel.ulysses=2"])
    ray_before = "ray" in sys.modules and sys.modules["ray"].is_initialized()
    with pytest.raises(ValueError, match="asks for 2 ranks: deploy the service with it .* set evaluate.url"):
        run_evaluate(app)
    assert ("ray" in sys.modules and sys.modules["ray"].is_initialized()) == ray_before


def test_ring_two_ranks_equal_one_process_where_the_family_allows(tmp_path):
    """Ring attention (keys passed round the ranks, merged by log-sum-exp) on the families without
    a padding mask, through the replica's calls; on CPU with tests/ring_shim.py's kernel."""
    models = ["hunyuan_video/tiny", "wan2.1-t2v-1.3b/tiny"]
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    generate_ranks(0, 1, 0, models, str(one))
    mp.spawn(generate_ranks, args=(2, free_port(), models, str(two), True), nprocs=2, join=True)
    for model in models:
        name = model.replace("/", "_")
        a, b = np.load(one / f"{name}.npy"), np.load(two / f"{name}.npy")
        assert np.abs(a - b).max() <= 1e-5, (model, float(np.abs(a - b).max()))  # measured <= 2.6e-6


def test_tiled_decode_split_across_two_ranks_equals_one_process(tmp_path):
    """The HunyuanVideo VAEs' tiled decode with its tiles shared by 2 ranks (each decodes every
    other tile, the tiles broadcast, diffusers' own blending) gives both ranks the one-process
    video; bitwise, since each tile is the same decoder call on the same slice. Wan's VAE carries
    a cache between its per-frame calls and is refused."""
    from medgen_ray.models.registry import load_model
    from medgen_ray.models.tiled_decode import split_decode, splits_decode
    from tests.parallel_ranks import DECODE_MODELS, decode_ranks

    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    decode_ranks(0, 1, 0, str(one))
    mp.spawn(decode_ranks, args=(2, free_port(), str(two)), nprocs=2, join=True)
    for model in DECODE_MODELS:
        name = model.replace("/", "_")
        ref = np.load(one / f"{name}.rank0.npy")
        tiles = [int((two / f"{name}.rank{r}.tiles").read_text()) for r in (0, 1)]
        assert min(tiles) >= 2 and abs(tiles[0] - tiles[1]) <= 1, (model, tiles)  # shared, every rank some
        for r in (0, 1):
            assert np.array_equal(np.load(two / f"{name}.rank{r}.npy"), ref), (model, r)
    wan = load_model("wan2.1-t2v-1.3b/tiny", None, "cpu", kind="video").vae
    assert not splits_decode(wan)
    with pytest.raises(ValueError, match="carries state"):
        split_decode(wan, 0, 2)

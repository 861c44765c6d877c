"""Model families: the spec table, shapes checked against it, shards of another family refused,
and the grep-able rule that nothing outside the specs branches on a family."""

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medgen_ray.config import ConfigError, load_config
from medgen_ray.models.families import FAMILIES, family_of
from medgen_ray.schema import SHARD_SCHEMA

ROOT = Path(__file__).resolve().parents[2] / "medgen_ray"
# the training loop, the Serve generator and app, the evaluation job and the other jobs' plumbing
FAMILY_FREE = ["train/loop.py", "train/precompute.py", "train/launch.py", "train/outputs.py", "train/strategy.py",
               "serve/generator.py", "serve/app.py", "serve/schema.py", "evaluate/job.py", "evaluate/score.py",
               "runner.py", "curate/job.py", "train/precompute_job.py", "train/train_job.py", "core/dataflow.py",
               "experiments/arms.py", "experiments/comparison.py", "demo.py"]
FAMILY_WORDS = re.compile(r"[Hh]unyuan|HUNYUAN|\bwan\d|\bwan_|\bWan[A-Z0-9]")


def test_every_family_has_a_production_and_a_tiny_registry_entry():
    from medgen_ray.models.registry import REGISTRY

    assert set(FAMILIES) == {"hunyuan_video", "hunyuan_video_1_5", "wan2.1-t2v-1.3b", "wan2.1-t2v-14b",
                             "wan2.2-ti2v-5b"}
    for name, fam in FAMILIES.items():
        assert REGISTRY[name].hub_id == fam.hub_id and not REGISTRY[name].tiny
        assert REGISTRY[f"{name}/tiny"].tiny and family_of(f"{name}/tiny") is fam
    with pytest.raises(KeyError, match="families: hunyuan_video"):
        family_of("sora")


@pytest.mark.parametrize("rel", FAMILY_FREE)
def test_no_family_is_named_outside_the_specs(rel):
    text = (ROOT / rel).read_text()
    hits = [line.strip() for line in text.splitlines() if FAMILY_WORDS.search(line)]
    assert not hits, f"{rel} names a family: {hits[:3]}"


def test_the_family_rule_can_fail():
    assert FAMILY_WORDS.search("if family.name == 'wan2.1-t2v-1.3b':")
    assert FAMILY_WORDS.search("pipe = HunyuanVideoPipeline(...)")


def test_shapes_are_checked_against_the_family():
    with pytest.raises(ConfigError, match=r"buckets\[0\] width=48: Wan2.2-TI2V-5B needs sides that are multiples of 32"):
        load_config(None, ["precompute.model=wan2.2-ti2v-5b/tiny", "precompute.buckets=[{frames: 9, height: 32, width: 48}]"])
    load_config(None, ["precompute.model=wan2.1-t2v-1.3b/tiny", "precompute.buckets=[{frames: 9, height: 32, width: 48}]"])
    serve = load_config(None, ["serve.model=wan2.1-t2v-1.3b"]).serve
    assert (serve.default_height, serve.default_width, serve.default_frames, serve.fps) == (480, 832, 81, 16)
    with pytest.raises(ConfigError, match="default_width=48: Wan2.2-TI2V-5B needs sides that are multiples of 32"):
        load_config(None, ["serve.model=wan2.2-ti2v-5b/tiny", "serve.default_width=48"])
    with pytest.raises(ConfigError, match="unknown video model 'sora'"):
        load_config(None, ["train.model=sora"])


def _shard(folder: Path, family: str | None):
    (folder / "shards").mkdir(parents=True)
    row = {"clip_id": "c0", "bucket": "9x32x48", "caption": "x", "latent": b"", "latent_shape": [], "text_embeds": b"",
           "text_shape": [], "pooled": b"", "pooled_shape": [], "text_embeds_2": b"", "text_2_shape": [],
           "dtype": "float32", "family": family or ""}
    table = pa.Table.from_pylist([row], schema=SHARD_SCHEMA)
    if family is None:  # written before families were recorded
        table = table.drop_columns(["family", "text_embeds_2", "text_2_shape"])
    pq.write_table(table, folder / "shards" / "part-0.parquet")


def test_shards_of_another_family_are_refused_before_training(tmp_path):
    from medgen_ray.train.launch import check_train_inputs

    _shard(tmp_path / "wan", "wan2.1-t2v-1.3b")
    cfg = load_config(None, [f"train.data={tmp_path / 'wan'}", "train.model=hunyuan_video/tiny"]).train
    with pytest.raises(ValueError, match=r"part-0.parquet: latents of \['wan2.1-t2v-1.3b'\], but train.model is a "
                                         "'hunyuan_video' model"):
        check_train_inputs(cfg)
    same = load_config(None, [f"train.data={tmp_path / 'wan'}", "train.model=wan2.1-t2v-1.3b/tiny"]).train
    assert check_train_inputs(same)[1].rows == 1
    _shard(tmp_path / "old", None)  # older shards: HunyuanVideo latents
    old = load_config(None, [f"train.data={tmp_path / 'old'}", "train.model=hunyuan_video/tiny"]).train
    assert check_train_inputs(old)[1].rows == 1
    with pytest.raises(ValueError, match="latents of \\['hunyuan_video'\\]"):
        check_train_inputs(load_config(None, [f"train.data={tmp_path / 'old'}", "train.model=wan2.1-t2v-14b"]).train)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_demo_takes_any_family(name):
    from importlib import resources

    from medgen_ray.demo import with_family

    app = load_config(str(resources.files("medgen_ray.configs") / "demo.yaml"), [f"demo.model={name}"])
    fam = FAMILIES[name]
    app = with_family(app, app.demo.model)
    assert app.precompute.model == app.train.model == app.serve.model == f"{name}/tiny"
    assert all(not b.problems(fam) for b in app.precompute.buckets)
    assert app.evaluate.models[0].name == f"{fam.label}-tiny"


HOOK_CALL = re.compile(r"module\(\)\.([a-z_]+)")


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_module_provides_the_hook_protocol(name):
    """Each hook module has every function of `FamilyHooks`, with the protocol's parameters
    (extra keyword parameters with defaults are allowed: HunyuanVideo's max_sequence_length)."""
    import inspect

    from medgen_ray.models.families import FamilyHooks

    module = FAMILIES[name].module()
    assert isinstance(module, FamilyHooks)
    for hook, proto in inspect.getmembers(FamilyHooks, inspect.isfunction):
        if hook.startswith("_"):
            continue
        want = [p for p in inspect.signature(proto).parameters.values() if p.name != "self"]
        got = inspect.signature(getattr(module, hook)).parameters
        for p in want:
            assert p.name in got, f"{FAMILIES[name].impl}.{hook} lacks parameter {p.name}"
            assert got[p.name].kind == p.kind, f"{FAMILIES[name].impl}.{hook}({p.name}) is {got[p.name].kind}"
        extra = [q for q in got.values() if q.name not in {p.name for p in want}]
        assert all(q.default is not inspect.Parameter.empty for q in extra), f"{hook}: extra required {extra}"


def test_every_hook_the_code_calls_is_in_the_protocol():
    """A hook called anywhere (`family.module().full_vae(...)`) is a member of the protocol, so the
    contract cannot fall behind the code again (it listed 7 hooks while 9 were called)."""
    from medgen_ray.models.families import FamilyHooks

    members = {n for n in dir(FamilyHooks) if not n.startswith("_")}
    called = {m for path in ROOT.rglob("*.py") for m in HOOK_CALL.findall(path.read_text())}
    assert called and called <= members, f"hooks called but not in FamilyHooks: {sorted(called - members)}"
    assert {"full_vae", "full_config"} <= called


def test_families_are_built_with_keywords():
    """The spec table reads like data: no positional values in a VideoFamily(...) call."""
    import ast

    tree = ast.parse((ROOT / "models" / "families.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "VideoFamily"]
    assert len(calls) == len(FAMILIES) and all(not c.args for c in calls)


def test_ddp_looks_for_unused_parameters_only_where_a_target_can_be_discarded():
    """HunyuanVideo-1.5's last block discards its text stream (a LoRA on to_add_out stopped DDP at
    step 1 without find_unused); every other family/target set uses every output, so DDP skips the
    per-step graph walk unless the user asks for it."""
    def find_unused(*overrides):
        return load_config(None, list(overrides)).train.find_unused

    assert find_unused("train.model=hunyuan_video_1_5/tiny", "train.lora.targets=[to_q, to_add_out]")
    assert find_unused("train.model=hunyuan_video_1_5/tiny", "train.lora.targets=[ff_context.net.2]")
    assert not find_unused("train.model=hunyuan_video_1_5/tiny")  # attention projections only
    for name in ("hunyuan_video", "wan2.1-t2v-1.3b", "wan2.2-ti2v-5b"):
        assert not find_unused(f"train.model={name}/tiny", "train.lora.targets=[to_q, to_add_out, ffn.net.2, proj_out]")
    assert find_unused("train.model=wan2.1-t2v-1.3b/tiny", "train.ddp_find_unused=true")


@pytest.mark.parametrize("name", list(FAMILIES))
def test_head_counts_are_the_transformers_own(name):
    """Degrees are checked against `heads` / TINY_HEADS before anything loads: they must be the
    head counts the released config and the tiny twin really build."""
    import inspect

    import diffusers

    from medgen_ray.models.families import TINY_HEADS
    from medgen_ray.models.video import load_transformer

    family = FAMILIES[name]
    cls = getattr(diffusers, family.transformer)
    full = {**{k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()},
            **family.module().full_config(family)}
    assert full["num_attention_heads"] == family.heads
    assert load_transformer(f"{name}/tiny", True, None).config.num_attention_heads == TINY_HEADS

import pytest

from medgen_ray.cli import main
from medgen_ray.config import ConfigError, derive, load_config


def test_overrides_are_typed_and_nested(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("curate:\n  segment:\n    min_seconds: 5\n")
    cfg = load_config(cfg_file, ["curate.segment.max_seconds=12", "curate.source.uris=[a,b]", "ray.num_cpus=3"])
    assert cfg.curate.segment.min_seconds == 5
    assert cfg.curate.segment.max_seconds == 12.0
    assert cfg.curate.source.uris == ["a", "b"]
    assert cfg.ray.num_cpus == 3


def test_every_bad_field_is_named():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["curate.segment.min_seconds=-1", "curate.cut.mode=fast", "curate.bogus=1",
                           "curate.classify.pool.max_actors=0"])
    text = "\n".join(err.value.problems)
    for field in ("curate.segment.min_seconds", "curate.cut.mode", "curate.bogus", "curate.classify.pool.max_actors"):
        assert field in text
    assert len(err.value.problems) == 4


def test_cross_field_rule():
    with pytest.raises(ConfigError, match="max_seconds"):
        load_config(None, ["curate.segment.min_seconds=8", "curate.segment.max_seconds=7"])


def test_malformed_override_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="a.b.c=value"):
        load_config(None, ["curate.output"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_cli_exits_2_and_names_fields(capsys, tmp_path):
    code = main(["curate", "curate.segment.min_seconds=oops", "curate.container.min_side=0"])
    err = capsys.readouterr().err
    assert code == 2
    assert "curate.segment.min_seconds" in err and "curate.container.min_side" in err


def test_actor_pools_that_starve_the_decode_tasks_are_refused():
    from medgen_ray.curate.job import check_cpu_budget

    cfg = load_config(None, ["curate.metadata.classifier_path=x.npz"]).curate
    with pytest.raises(ValueError, match="curate.classify.pool: 1 x 1 CPU, curate.metadata.pool: 1 x 1 CPU, "
                                         "curate.quality.pool: 1 x 1 CPU"):
        check_cpu_budget(cfg, 3)
    check_cpu_budget(cfg, 4)
    cfg = derive(cfg, {"classify.pool.num_cpus": 0.25, "metadata.pool.num_cpus": 0.25, "quality.pool.num_cpus": 0.25})
    check_cpu_budget(cfg, 2)


def test_shipped_configs_validate():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    configs = list((root / "jobs" / "configs").rglob("*.yaml")) + [root / "medgen_ray" / "configs" / "demo.yaml"]
    assert len(configs) >= 3
    for path in configs:
        load_config(path)


def test_gpu_pools_must_fit_the_cluster():
    """Fractional GPUs let small models share a card; pools whose minimum needs more GPUs than
    the cluster has are refused up front, naming each pool."""
    from medgen_ray.curate.job import check_gpu_budget

    shipped = load_config("jobs/configs/curate.yaml").curate
    assert 0 < shipped.classify.pool.num_gpus < 1 and 0 < shipped.quality.pool.num_gpus < 1
    check_gpu_budget(shipped, 2)  # 4 x 0.25 + 2 x 0.5
    with pytest.raises(ValueError, match=r"need 2 GPUs.*curate.classify.pool: 4 x 0.25 GPU, "
                                         r"curate.quality.pool: 2 x 0.5 GPU.*has 1"):
        check_gpu_budget(shipped, 1)
    check_gpu_budget(load_config(None, []).curate, 0)  # CPU-only pools need no GPU


FAMILY_NAMES = ["hunyuan_video", "hunyuan_video_1_5", "wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "wan2.2-ti2v-5b"]


def _family_values(app, section):
    """Every value of a section that follows its model family."""
    if section == "serve":
        s = app.serve
        return (s.default_height, s.default_width, s.default_frames, s.default_guidance, s.fps)
    if section == "precompute":
        return [(b.frames, b.height, b.width) for b in app.precompute.buckets]
    return app.train.flow_shift


def _expected(name, section):
    from medgen_ray.models.families import family_of

    f = family_of(name)
    if section == "serve":
        return (f.height, f.width, f.frames, f.guidance, f.fps)
    if section == "precompute":
        side = round((f.height * f.width) ** 0.5 / f.spatial) * f.spatial
        return [(33, f.height, f.width), (33, f.width, f.height), (33, side, side)]
    return f.shift


@pytest.mark.parametrize("section", ["serve", "precompute", "train"])
@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_a_derived_config_takes_the_new_models_defaults(name, section, tmp_path):
    """Issue 22, bug 1: defaults that follow the family were stored at validation, so deriving a
    config with another model kept the first model's (Wan served at 544x960 with guidance 6.0;
    Wan2.2's buckets refused). Through `derive`, `a.b=v` overrides on a validated config (the
    experiments' path), a YAML file plus CLI overrides, and from another family back."""
    from medgen_ray.config import with_overrides

    key, model = f"{section}.model", f"{name}/tiny"
    fresh = load_config(None, [f"{key}={model}"])
    assert _family_values(fresh, section) == _expected(name, section)
    start_other = "wan2.2-ti2v-5b/tiny" if name.startswith("hunyuan") else "hunyuan_video/tiny"
    for start in (load_config(), load_config(None, [f"{key}={start_other}"])):
        assert _family_values(derive(start, {key: model}), section) == _expected(name, section)
        assert _family_values(with_overrides(start, [f"{key}={model}"]), section) == _expected(name, section)
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(f"{section}:\n  model: {start_other}\n")
    assert _family_values(load_config(cfg_file, [f"{key}={model}"]), section) == _expected(name, section)


def test_values_the_user_set_survive_a_model_change():
    """Only the family's own defaults follow the model: a side, a bucket list or a shift the user
    gave stays (and is still checked against the new family)."""
    app = load_config(None, ["serve.default_height=256", "serve.default_guidance=3.5", "train.shift=2.0",
                             "precompute.buckets=[{frames: 9, height: 64, width: 64}]"])
    wan = derive(app, {"serve.model": "wan2.1-t2v-1.3b/tiny", "train.model": "wan2.1-t2v-1.3b/tiny",
                       "precompute.model": "wan2.2-ti2v-5b/tiny"})
    assert (wan.serve.default_height, wan.serve.default_width, wan.serve.default_guidance) == (256, 832, 3.5)
    assert wan.train.flow_shift == 2.0
    assert [(b.frames, b.height, b.width) for b in wan.precompute.buckets] == [(9, 64, 64)]
    with pytest.raises(ConfigError, match="multiples of 32"):
        derive(load_config(None, ["precompute.buckets=[{frames: 9, height: 48, width: 64}]"]),
               {"precompute.model": "wan2.2-ti2v-5b/tiny"})


def test_settings_round_trip_to_an_equal_config():
    """`settings` is what crosses processes (Serve deployments, Ray Train workers, Tune trials):
    validating it again gives the same config."""
    from medgen_ray.config import AppConfig, settings

    app = load_config(None, ["serve.model=wan2.1-t2v-14b/tiny", "curate.segment.max_seconds=12"])
    assert AppConfig.model_validate(settings(app)) == app
    assert "default_height" not in settings(app)["serve"]

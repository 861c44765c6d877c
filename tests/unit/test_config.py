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
    from medgen_ray.runner import check_cpu_budget

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
    from medgen_ray.runner import check_gpu_budget

    shipped = load_config("jobs/configs/curate.yaml").curate
    assert 0 < shipped.classify.pool.num_gpus < 1 and 0 < shipped.quality.pool.num_gpus < 1
    check_gpu_budget(shipped, 2)  # 4 x 0.25 + 2 x 0.5
    with pytest.raises(ValueError, match=r"need 2 GPUs.*curate.classify.pool: 4 x 0.25 GPU, "
                                         r"curate.quality.pool: 2 x 0.5 GPU.*has 1"):
        check_gpu_budget(shipped, 1)
    check_gpu_budget(load_config(None, []).curate, 0)  # CPU-only pools need no GPU

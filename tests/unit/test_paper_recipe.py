"""A config that says "the paper's" reproduces every number the paper states
(tests/data/paper_recipe.yaml); our own choices are labelled in the files."""

from pathlib import Path

import pytest
import yaml

from medgen_ray.config import load_config

ROOT = Path(__file__).resolve().parents[2]
PAPER = yaml.safe_load((ROOT / "tests" / "data" / "paper_recipe.yaml").read_text())


def _get(cfg, dotted: str):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


@pytest.mark.parametrize("key", [k for k in PAPER["train"] if "." in k])
def test_train_config_is_the_papers(key):
    app = load_config(ROOT / "jobs/configs/train.yaml")
    assert _get(app, key) == PAPER["train"][key], key


def test_train_batch_and_frames_are_the_papers():
    app = load_config(ROOT / "jobs/configs/train.yaml")
    assert app.train.num_workers * app.train.micro_batch == PAPER["train"]["global_batch_per_step"]
    assert app.train.validation.num_frames == PAPER["precompute"]["frames"]
    pre = load_config(ROOT / "jobs/configs/precompute.yaml").precompute
    assert {b.frames for b in pre.buckets} == {PAPER["precompute"]["frames"]}


@pytest.mark.parametrize("key", list(PAPER["curate"]))
def test_curate_config_is_the_papers(key):
    assert _get(load_config(ROOT / "jobs/configs/curate.yaml"), key) == PAPER["curate"][key], key


def test_every_our_choice_is_labelled():
    """Each line of train.yaml that sets a value says whose it is (paper or ours), or is plumbing."""
    plumbing = {"data", "weights", "storage_path", "name", "use_gpu", "cpus_per_worker", "zero_stage", "guidance",
                "checkpoint_every", "keep_checkpoints", "max_failures", "every_steps", "prompts", "height", "width",
                "steps", "train", "validation", "-"}
    for line in (ROOT / "jobs/configs/train.yaml").read_text().splitlines():
        if ":" not in line or line.lstrip().startswith("#"):
            continue
        key = line.strip().split(":")[0].split(" ")[0]
        if key not in plumbing and not key.startswith("-"):
            assert "# paper" in line or "# ours" in line, line

"""One-command experiments: arms that differ in their data view or training settings, each
trained into its own LoRA, all evaluated with Med-VBench side by side.

For each arm: a dataset view of the scored dataset (clip filters disabled or re-thresholded,
optionally only some categories, optionally a share of clips from a second dataset mixed in)
-> latent shards -> a LoRA (`train.*` overrides, e.g. the rank); or a LoRA trained elsewhere
(`lora:`). Then one Med-VBench run with every arm's LoRA as an adapter of the offline
generators (and the base model), and the comparison (`experiment_report`): every arm against
the reference, overall and per category, and the data-mix trade-off. Writes
<output>/<name>/experiment.{json,md,html} and the charts.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

import fsspec
import numpy as np
import pyarrow as pa

from medgen_ray.config import AppConfig, ArmConfig, EvalModelConfig, derive, settings, with_overrides
from medgen_ray.core.cluster import init_ray
from medgen_ray.core.storage import absolute_local
from medgen_ray.evaluate.job import run_evaluate
from medgen_ray.schema import CLIP_ID
from medgen_ray.train.precompute_job import run_precompute
from medgen_ray.train.train_job import run_train


def _view(app: AppConfig, arm: ArmConfig, base: str, out: str) -> dict[str, Any]:
    from medgen_ray.core.parts import list_parts, read_part, write_table_atomic
    from medgen_ray.curate.view import write_view

    summary = write_view(base, out, app.curate, arm.disable)
    fs, root = fsspec.core.url_to_fs(out)
    parts = list_parts(out, "manifest")
    if arm.categories:  # cross-domain hold-out: train on these categories only
        kept = 0
        for path in parts:
            t = read_part(fs, path)
            mask = np.array([c in arm.categories for c in t.column("category").to_pylist()], dtype=bool)
            kept += int(mask.sum())
            if mask.any():
                write_table_atomic(fs, path, t.filter(pa.array(mask)))
            else:
                fs.rm(path)
        summary["clips_kept"] = kept
    if arm.mix is not None and arm.mix.share > 0:
        summary["mixed_in"] = _mix(arm, summary["clips_kept"], out, app.experiment.seed)
    return summary


def _mix(arm: ArmConfig, n_own: int, out: str, seed: int) -> int:
    """Add clips of the second dataset so they make `share` of the arm's clips."""
    from medgen_ray.core.parts import list_parts, read_part, write_table_atomic

    mix = arm.mix
    want = int(round(mix.share * n_own / (1 - mix.share)))
    mfs, _ = fsspec.core.url_to_fs(mix.dataset)
    tables = [read_part(mfs, p) for p in list_parts(mix.dataset, "manifest")]
    if not tables:
        raise FileNotFoundError(f"experiment arm {arm.name}: mix.dataset {mix.dataset!r} has no manifest")
    other = pa.concat_tables(tables, promote_options="permissive")
    take = np.random.default_rng(seed).permutation(other.num_rows)[:want]
    fs, root = fsspec.core.url_to_fs(out)
    if len(take):
        # clip ids are unique within a dataset, not across two: the mixed-in ones are named after
        # their dataset (training keys its epoch bookkeeping and its latents by clip id)
        picked = other.take(pa.array(take))
        tag = mix.dataset.rstrip("/").rsplit("/", 1)[-1]
        ids = [f"{tag}:{c}" for c in picked.column(CLIP_ID).to_pylist()]
        own = {c for p in list_parts(out, "manifest") for c in read_part(fs, p, [CLIP_ID]).column(CLIP_ID).to_pylist()}
        if own & set(ids):
            raise ValueError(f"experiment arm {arm.name}: mix.dataset {mix.dataset!r} clip ids {sorted(own & set(ids))[:3]} "
                             "collide with the arm's own even when named after their dataset")
        picked = picked.set_column(picked.column_names.index(CLIP_ID), CLIP_ID, pa.array(ids, pa.string()))
        write_table_atomic(fs, f"{root}/manifest/part-mix.parquet", picked)
    return int(len(take))


def _precompute_key(app: AppConfig) -> str:
    """What decides a clip's latents besides the clip: the precompute settings (an arm's overrides
    may change them), not where the job reads or writes."""
    cfg = settings(app.precompute)
    return json.dumps({k: v for k, v in cfg.items() if k not in ("dataset", "output", "resume")}, sort_keys=True)


def _view_clips(view: str, columns: list[str]) -> pa.Table:
    """A view's manifest rows: the columns precompute reads that the view has."""
    import pyarrow.parquet as pq

    from medgen_ray.core.parts import list_parts, read_part

    fs, _ = fsspec.core.url_to_fs(view)
    tables = []
    for path in list_parts(view, "manifest"):
        with fs.open(path, "rb") as fh:
            names = pq.ParquetFile(fh).schema_arrow.names
        tables.append(read_part(fs, path, [c for c in columns if c in names]))
    return pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({CLIP_ID: pa.array([], pa.string())})


@dataclass
class _LatentGroup:
    """Arms that share one precompute job: same settings, no clip id naming two files."""

    key: str
    cfg: AppConfig
    uris: dict[str, str] = field(default_factory=dict)  # clip id -> clip file, over the members' views
    members: list[tuple[str, pa.Table]] = field(default_factory=list)  # (arm, its view's clips)

    def admits(self, key: str, uris: dict[str, str]) -> bool:
        return key == self.key and all(self.uris.get(c, u) == u for c, u in uris.items())


def shared_latents(plans: list[tuple[str, AppConfig, str]], root: str) -> dict[str, str]:
    """Encode each clip once per experiment. `plans`: (arm, its config, its view). Arms whose
    precompute settings agree share one precompute job over the union of their views
    (<root>/latents/<k>); each arm's latents folder then holds that job's rows of its own clips,
    copied, not encoded again (each shared part read once for all arms). A clip id that two views
    give different clip files starts a group of its own (precompute resumes by clip id). Returns
    arm -> its latents folder."""
    from medgen_ray.core.parts import list_parts, read_part, write_table_atomic
    from medgen_ray.schema import CLIP_URI, PRECOMPUTE_INPUT, SHARD_REJECTS, SHARDS

    groups: list[_LatentGroup] = []
    for arm, cfg, view in plans:
        pc = cfg.precompute
        clips = _view_clips(view, PRECOMPUTE_INPUT + [c for c in (pc.caption_field, pc.fallback_caption_field) if c])
        uris = dict(zip(clips.column(CLIP_ID).to_pylist(), clips.column(CLIP_URI).to_pylist() if clips.num_rows else []))
        key = _precompute_key(cfg)
        group = next((g for g in groups if g.admits(key, uris)), None)
        if group is None:
            group = _LatentGroup(key, cfg)
            groups.append(group)
        group.uris.update(uris)
        group.members.append((arm, clips))
    out: dict[str, str] = {}
    for k, group in enumerate(groups):
        union = pa.concat_tables([t for _, t in group.members], promote_options="permissive")
        first: dict[str, int] = {}
        for i, c in enumerate(union.column(CLIP_ID).to_pylist()):
            first.setdefault(c, i)
        folder = f"{root}/latents/{k}"
        fs, froot = fsspec.core.url_to_fs(folder)
        fs.makedirs(f"{froot}/view/manifest", exist_ok=True)
        write_table_atomic(fs, f"{froot}/view/manifest/part-00000.parquet",
                           union.take(pa.array(sorted(first.values()), pa.int64())))
        names = ", ".join(a for a, _ in group.members)
        print(f"experiment: {len(first)} clips of arms {names} encoded once into {folder}", file=sys.stdout)
        run_precompute(derive(group.cfg, {"precompute.dataset": f"{folder}/view", "precompute.output": f"{folder}/all",
                                          "precompute.resume": True}))
        dests = {}
        for arm, clips in group.members:
            dest = out[arm] = f"{root}/arms/{arm}/latents"
            dfs, droot = fsspec.core.url_to_fs(dest)
            if dfs.exists(droot):
                dfs.rm(droot, recursive=True)  # a rerun writes the arm's rows anew
            dests[arm] = (dfs, droot, set(clips.column(CLIP_ID).to_pylist()))
        for name in (SHARDS, SHARD_REJECTS):
            for path in list_parts(f"{folder}/all", name):
                t = read_part(fs, path)
                ids = t.column(CLIP_ID).to_pylist()
                for dfs, droot, mine in dests.values():
                    rows = t.filter(pa.array([c in mine for c in ids], pa.bool_()))
                    if rows.num_rows:
                        dfs.makedirs(f"{droot}/{name}", exist_ok=True)
                        write_table_atomic(dfs, f"{droot}/{name}/{path.rsplit('/', 1)[-1]}", rows)
    return out


def sweep_arm_name(key: str, value: Any) -> str:
    """rank-16 for train.lora.rank = 16."""
    return f"{key.rsplit('.', 1)[-1]}-{value}"


def _sweep_trial(config: dict[str, Any], train: Callable[[AppConfig], dict[str, Any]]) -> None:
    """One Ray Tune trial: a LoRA trained by Ray Train with the trial's value."""
    from ray import tune

    app = with_overrides(AppConfig.model_validate(config["app"]), config["overrides"])
    result = train(app)
    tune.report({"final_loss": result["final_loss"] if result["final_loss"] is not None else float("nan"),
                 "steps": result["steps"]})


def run_sweep(app: AppConfig, root: str) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """One view and one set of shards, then a Ray Tune grid over `sweep.key`."""
    from ray import tune

    from medgen_ray.train.outputs import export_dir

    exp, sweep = app.experiment, app.experiment.sweep
    view = f"{root}/arms/shared/view"
    fs, vroot = fsspec.core.url_to_fs(view)
    summary = json.loads(fs.cat(f"{vroot}/view.json")) if fs.exists(f"{vroot}/view.json") else \
        _view(app, ArmConfig(name="shared"), exp.dataset, view)
    cfg = derive(app, {"precompute.dataset": view, "precompute.output": f"{root}/arms/shared/latents"})
    run_precompute(cfg)
    cfg = derive(cfg, {"train.data": cfg.precompute.output, "train.storage_path": absolute_local(f"{root}/runs")})
    names = {v: sweep_arm_name(sweep.key, v) for v in sweep.values}

    def overrides(v: Any) -> list[str]:
        return [f"{sweep.key}={v}", f"train.name={names[v]}",
                *(f"{k}={t.replace('{value}', str(v))}" for k, t in sweep.also.items())]

    init_ray(app.ray)
    tuner = tune.Tuner(
        tune.with_resources(partial(_sweep_trial, train=run_train), {"cpu": sweep.trial_cpus}),
        param_space={"app": settings(cfg), "overrides": tune.grid_search([overrides(v) for v in sweep.values])},
        tune_config=tune.TuneConfig(max_concurrent_trials=sweep.max_concurrent),
        run_config=tune.RunConfig(name=f"{exp.name}-tune", storage_path=cfg.train.storage_path),
    )
    grid = tuner.fit()
    failed = [r.error for r in grid if r.error is not None]
    if failed:
        raise RuntimeError(f"sweep trials failed: {failed[:2]}")
    arms, adapters = {}, {}
    for v in sweep.values:
        trial_cfg = with_overrides(cfg, overrides(v))
        name = names[v]
        adapters[name] = export_dir(trial_cfg.train)
        run = f"{trial_cfg.train.storage_path.rstrip('/')}/{name}"
        with fsspec.open(f"{run}/loss.csv", "r") as fh:
            last = fh.read().strip().splitlines()[-1].split(",")
        arms[name] = {"clips": summary["clips_kept"], "mixed_in": 0, "disabled": [], "categories": [],
                      "overrides": overrides(v), "final_loss": float(last[2]), "lora": adapters[name],
                      "rank": trial_cfg.train.lora.rank, "loss_csv": f"{run}/loss.csv", "share": 0.0}
    return arms, adapters


def _holdout_categories(app: AppConfig) -> AppConfig:
    """A hold-out arm is judged per clip category, so the prompts need the clip categories: when
    no prompt classifier is configured, fit one on the experiment dataset's captions."""
    if not any(a.categories for a in app.experiment.arms) or app.evaluate.prompt_classifier is not None:
        return app
    from medgen_ray.config import PromptClassifierConfig

    app = derive(app, {"evaluate.prompt_classifier": PromptClassifierConfig(train_on=app.experiment.dataset)})
    print(f"experiment {app.experiment.name}: prompts get clip categories from a probe fitted on the captions "
          f"of {app.experiment.dataset} (set evaluate.prompt_classifier to choose another)", file=sys.stdout)
    return app


def run_experiment(app: AppConfig) -> dict[str, Any]:
    """Every arm's view, shards and LoRA (or the sweep's), one Med-VBench run over all of them,
    and the comparison report; returns the experiment's result."""
    from medgen_ray.experiments.comparison import compare_arms, write_experiment_report
    from medgen_ray.train.outputs import export_dir

    exp = app.experiment
    if exp.sweep is None and len(exp.arms) < 1:
        raise ValueError("experiment.arms: give at least one arm (or experiment.sweep)")
    if exp.sweep is None and not exp.include_base and len(exp.arms) < 2:
        raise ValueError("experiment.arms: nothing to compare (one arm and include_base false)")
    names = [sweep_arm_name(exp.sweep.key, v) for v in exp.sweep.values] if exp.sweep is not None \
        else [a.name for a in exp.arms]
    reference = exp.reference or ("base" if exp.include_base else names[0])
    if reference not in names + (["base"] if exp.include_base else []):  # checked before hours of training
        raise ValueError(f"experiment.reference {reference!r} is not an arm ({names}) or the base model")
    app = _holdout_categories(app)
    root = f"{exp.output.rstrip('/')}/{exp.name}"
    arms: dict[str, dict[str, Any]] = {}
    adapters: dict[str, str] = {}
    if exp.sweep is not None:
        arms, adapters = run_sweep(app, root)
    plans: list[tuple[ArmConfig, AppConfig, str, dict[str, Any]]] = []
    for arm in ([] if exp.sweep is not None else exp.arms):
        if arm.lora:  # a LoRA trained elsewhere: evaluated as it is
            adapters[arm.name] = arm.lora
            arms[arm.name] = {"clips": None, "mixed_in": 0, "share": 0.0, "disabled": [], "categories": [],
                              "overrides": [], "final_loss": None, "lora": arm.lora, "rank": None, "loss_csv": None}
            continue
        cfg = with_overrides(app, arm.overrides)
        view = f"{root}/arms/{arm.name}/view"
        fs, vroot = fsspec.core.url_to_fs(view)
        summary = json.loads(fs.cat(f"{vroot}/view.json")) if fs.exists(f"{vroot}/view.json") else \
            _view(cfg, arm, exp.dataset, view)
        print(f"experiment {exp.name} arm {arm.name}: {summary['clips_kept']} clips in its view", file=sys.stdout)
        plans.append((arm, cfg, view, summary))
    latents = shared_latents([(arm.name, cfg, view) for arm, cfg, view, _ in plans], root) if plans else {}
    for arm, cfg, _, summary in plans:
        cfg = derive(cfg, {"train.data": latents[arm.name], "train.storage_path": f"{root}/runs",
                           "train.name": arm.name})
        result = run_train(cfg)
        adapters[arm.name] = export_dir(cfg.train)
        arms[arm.name] = {"clips": summary["clips_kept"], "mixed_in": summary.get("mixed_in", 0),
                          "share": arm.mix.share if arm.mix else 0.0,
                          "disabled": arm.disable, "categories": arm.categories, "overrides": arm.overrides,
                          "final_loss": result["final_loss"], "lora": adapters[arm.name],
                          "rank": cfg.train.lora.rank, "loss_csv": f"{result['run_dir']}/loss.csv"}
    if exp.sweep is None:  # the arms in their configured order (LoRAs given as they are came first above)
        arms = {a.name: arms[a.name] for a in exp.arms}
        adapters = {a.name: adapters[a.name] for a in exp.arms}
    models = ([EvalModelConfig(name="base", adapter="base")] if exp.include_base else []) + \
        [EvalModelConfig(name=a, adapter=a) for a in adapters]
    ev = derive(app, {"serve.adapters": {**app.serve.adapters, **adapters}, "evaluate.models": models,
                      "evaluate.output": f"{root}/eval", "evaluate.url": None})
    scores = run_evaluate(ev)
    by_model = {r["model"]: r for r in scores["per_model"]}
    for name, info in arms.items():
        info["medvbench"] = by_model.get(name)
    result = {"name": exp.name, "arms": arms, "base": by_model.get("base"), "report": scores["report"],
              "per_category": scores["per_category"], "reference": reference,
              **compare_arms(scores["per_video"], arms, reference, ev.evaluate.dimensions, exp.seed)}
    write_experiment_report(root, result, ev.evaluate.dimensions)
    return result

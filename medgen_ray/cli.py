"""`medgen` command line: demo, curate, precompute, train, lora, serve, generate, evaluate, classifiers, weights, samples."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from importlib import resources
from pathlib import Path

from medgen_ray.config import AppConfig, ConfigError, load_config
from medgen_ray.core.console import VERBOSE_ENV, verbose
from medgen_ray.core.errors import UnsupportedVersion
from medgen_ray.models.weights import WeightsUnavailable


def _config(args: argparse.Namespace, default: str | None = None) -> AppConfig:
    path = args.config
    if path is None and default is not None:
        path = str(resources.files("medgen_ray.configs").joinpath(default))
    return load_config(path, args.overrides)


def cmd_demo(args: argparse.Namespace) -> int:
    """`medgen demo`: the whole system on an embedded Ray with tiny models; exit 1 if inputs are unaccounted."""
    from medgen_ray.demo import run_demo

    result = run_demo(_config(args, "demo.yaml"))
    return 0 if result["summary"]["accounted"] else 1


def cmd_curate(args: argparse.Namespace) -> int:
    """`medgen curate`: the curation job; exit 1 if some input ended neither kept, rejected nor errored."""
    from medgen_ray.runner import run_curate

    summary = run_curate(_config(args))
    return 0 if summary["accounted"] else 1


def cmd_precompute(args: argparse.Namespace) -> int:
    """`medgen precompute`: latent and text-embedding shards of a curated dataset."""
    from medgen_ray.runner import run_precompute

    run_precompute(_config(args))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """`medgen train`: LoRA fine-tuning on Ray Train."""
    from medgen_ray.runner import run_train

    run_train(_config(args))
    return 0


def cmd_lora_merge(args: argparse.Namespace) -> int:
    """`medgen lora merge`: save a pipeline with a LoRA folded into its weights."""
    from medgen_ray.models.registry import load_model
    from medgen_ray.train.lora import merge_lora_into_pipeline

    pipe = load_model(args.model, args.weights, "cpu", kind="video")
    merge_lora_into_pipeline(pipe, args.lora, scale=args.scale).save_pretrained(args.out)
    print(f"merged {args.lora} into {args.model} -> {args.out}")
    return 0


def cmd_lora_export(args: argparse.Namespace) -> int:
    """Write both export formats from a training checkpoint (or convert one format to the other)."""
    import torch

    from medgen_ray.models.registry import load_transformer
    from medgen_ray.train.lora import load_lora_file, save_diffusers_lora, save_original_lora
    from medgen_ray.train.strategy import STATE_FILE

    cfg = dict(load_transformer(args.model, args.weights).config)
    src = Path(args.source)
    if (src / STATE_FILE).is_file():
        saved = torch.load(src / STATE_FILE, map_location="cpu", weights_only=False)
        state, rank = saved["lora"], saved["rank"]
        alpha = args.alpha if args.alpha is not None else float(saved["alpha"])
    else:  # an exported file: its scale is already folded in
        state = {k.removeprefix("transformer."): v for k, v in load_lora_file(str(src), cfg).items()}
        rank = next(v.shape[0] for k, v in state.items() if ".lora_A." in k)
        alpha = float(rank)
    print(save_diffusers_lora(state, rank, alpha, args.out))
    print(save_original_lora(state, cfg, rank, alpha, args.out))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """`medgen serve`: the generation service until Ctrl-C."""
    from medgen_ray.serve.launch import run_serve

    run_serve(_config(args))
    return 0


def cmd_cache_calibrate(args: argparse.Namespace) -> int:
    """`medgen cache calibrate`: MagCache ratios of the served model into a JSON file."""
    from medgen_ray.serve.magcache import CALIBRATION_PROMPT, run_calibration

    entry = run_calibration(_config(args), args.out, args.steps, args.prompt or CALIBRATION_PROMPT)
    print(f"magcache: {entry['model']} at {entry['steps']} steps, {entry['shape']} -> {args.out} "
          f"({entry['seconds']} s); set serve.cache.mag_ratios={args.out}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    """`medgen generate`: one video from a running service; exit 1 on a service error."""
    from medgen_ray.serve.client import ServiceError, generate

    request = {"prompt": args.prompt, "seed": args.seed, "adapter": args.adapter}
    for key in ("negative_prompt", "height", "width", "num_frames", "steps", "guidance"):
        if getattr(args, key) is not None:
            request[key] = getattr(args, key)
    try:
        job = generate(args.url, request, args.out, token=args.token)
    except ServiceError as exc:
        print(f"medgen: error: {exc}", file=sys.stderr)
        return 1
    print(f"{job['id']} -> {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """`medgen evaluate`: Med-VBench; exit 1 if no video was scored."""
    from medgen_ray.config import derive
    from medgen_ray.runner import run_evaluate

    given = {"evaluate.videos": args.videos, "evaluate.prompts": args.prompts, "evaluate.output": args.out}
    app = derive(_config(args), {k: v for k, v in given.items() if v})
    result = run_evaluate(app)
    return 0 if result["videos"] else 1


def cmd_study_create(args: argparse.Namespace) -> int:
    """`medgen study create`: a blinded doctors' study of an evaluation's videos, for Label Studio."""
    from medgen_ray.evaluate.study import create_study

    study = create_study(args.eval, args.out, args.model, [r for r in args.raters.split(",") if r], seed=args.seed,
                         media=args.media, document_root=args.document_root, expires_s=args.expires)
    print(f"study {study['study_id']}: {study['pair_tasks']} pair tasks, {study['distortion_tasks']} distortion "
          f"tasks for {len(study['raters'])} raters -> {args.out}")
    for s in study["skipped_prompts"]:
        print(f"  prompt {s['prompt_index']} left out: {s['reason']}")
    print("  Label Studio: per rater, a project with label_studio/pairs.xml importing label_studio/<rater>.pairs.json "
          "and one with distortion.xml importing <rater>.distortion.json")
    if args.media == "local-files":
        print(f"  each project needs a Local Files storage on {args.out}/media (LOCAL_FILES_SERVING_ENABLED=true, "
              f"LOCAL_FILES_DOCUMENT_ROOT={args.document_root})")
    print(f"  keep {args.out}/key.sealed.json from the raters")
    return 0


def cmd_study_results(args: argparse.Namespace) -> int:
    """`medgen study results`: unblind the raters' answers; Fig. 6, kappa, warping error."""
    from medgen_ray.evaluate.study_results import study_results, write_study_results

    result = study_results(args.study, args.answers)
    out = write_study_results(args.study, result, args.out)
    for r in result["fig6"]:
        print(f"{r['focus']} vs {r['other']} {r['aspect']}: {r['win']} wins, {r['both_lose']} both lose, "
              f"{r['loss']} losses, {r['split']} split ({r['tasks']} tasks)")
    for k in result["kappa"]:
        print(f"kappa {k['task']} {k['raters']} ({k['kind']}): {k['kappa']:.3f} on {k['items']} items")
    for m, v in result["warping_error"].items():
        print(f"warping error {m}: {v:.2f}")
    for g in result["gap_counts"]:
        print(f"gap: {g['rater']} {g['tasks']} task(s) {g['gap']}")
    if args.eval:
        from medgen_ray.evaluate.job import retotal_with_study

        print(f"evaluate: report {retotal_with_study(args.eval, f'{out}/ratings.csv', result)}")
    print(f"study results -> {out}")
    return 0


def cmd_dataset_view(args: argparse.Namespace) -> int:
    """`medgen dataset view`: re-apply clip filters to stored scores into a new dataset folder."""
    from medgen_ray.curate.view import print_view, write_view

    summary = write_view(args.dataset, args.out, _config(args).curate,
                         [d for d in (args.disable or "").split(",") if d])
    print_view(summary, sys.stdout)
    return 0


def cmd_dataset_dedup(args: argparse.Namespace) -> int:
    """`medgen dataset dedup`: near-duplicate clips removed into a new dataset folder."""
    from medgen_ray.runner import run_dedup

    run_dedup(_config(args), args.dataset, args.out)
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    """`medgen experiment`: arms or a sweep of LoRAs, evaluated side by side."""
    from medgen_ray.runner import run_experiment

    run_experiment(_config(args))
    return 0


def cmd_caption(args: argparse.Namespace) -> int:
    """`medgen caption`: fill captions left pending by an LLM outage or budget."""
    from medgen_ray.curate.captions import fill_pending_captions

    counts = fill_pending_captions(args.dataset, _config(args).curate.captions)
    print(json.dumps(counts))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """`medgen report`: the dataset's HTML report."""
    from medgen_ray.curate.dataset_report import write_dataset_report

    print(write_dataset_report(args.dataset, _config(args).curate, args.out))
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    """`medgen review`: draw a review sample of a stage's decisions, or score a filled review sheet."""
    from medgen_ray.curate.review import draw_review, score_review

    if args.score:
        print(json.dumps(score_review(args.score)))
    else:
        print(draw_review(args.dataset, args.stage, args.sample, args.seed))
    return 0


def cmd_train_text(args: argparse.Namespace) -> int:
    """`medgen classifier train-text`: the metadata relevance classifier."""
    from medgen_ray.curate.classifiers import train_text_classifier

    rep = train_text_classifier(args.csv, args.embedder, args.out, seed=args.seed)
    print(json.dumps(rep.__dict__))
    return 0


def cmd_train_frames(args: argparse.Namespace) -> int:
    """`medgen classifier train-frames`: the frame linear probe on CLIP features."""
    from medgen_ray.curate.classifiers import train_frame_probe

    rep = train_frame_probe(args.csv, args.clip_model, args.out, args.weights, seed=args.seed)
    print(json.dumps(rep.__dict__))
    return 0


def cmd_train_categories(args: argparse.Namespace) -> int:
    """`medgen classifier train-categories`: the prompt/clip category probe."""
    from medgen_ray.curate.classifiers import dataset_captions, read_category_csv, train_category_classifier

    if bool(args.dataset) == bool(args.csv):
        print("medgen: error: give --dataset (a curated dataset's captions) or --csv (text,category)", file=sys.stderr)
        return 2
    texts, labels = dataset_captions(args.dataset, args.text_column, args.limit, args.seed) if args.dataset \
        else read_category_csv(args.csv)
    rep = train_category_classifier(texts, labels, args.embedder, args.out, seed=args.seed)
    print(json.dumps({**rep.__dict__, "categories": sorted(set(labels))}))
    return 0


def cmd_weights_list(args: argparse.Namespace) -> int:
    """`medgen weights list`: every model a config can name (registry and Med-VBench), with its source."""
    from medgen_ray.models.requirements import list_models

    for m in list_models():
        print(f"{m.name:22s} {m.kind:5s} {m.source:45s} {'' if m.pullable else '(nothing to pull) '}{m.note}")
    return 0


def cmd_weights_pull(args: argparse.Namespace) -> int:
    """`medgen weights pull`: pre-stage models' weights for an offline cluster."""
    from medgen_ray.models.requirements import pull_model

    for name in args.names:
        print(f"{name} -> {pull_model(name, args.dest)}")
    return 0


def cmd_weights_check(args: argparse.Namespace) -> int:
    """`medgen weights check`: every model the config's jobs load; exit 1 if any weight is missing."""
    from medgen_ray.models.requirements import check_weights, jobs_of_config

    reqs = check_weights(_config(args), args.job or jobs_of_config(args.config))
    for r in reqs:
        print(f"{'ok  ' if r.ok else 'MISS'} {r.job:10s} {r.field:48s} {r.model:20s} {r.status}")
    missing = sum(not r.ok for r in reqs)
    print(f"{len(reqs)} model loads checked, {missing} missing")
    return 1 if missing else 0


def cmd_samples(args: argparse.Namespace) -> int:
    """`medgen samples`: a generated corpus (and broken files) whose truth is known."""
    from medgen_ray.samples.bad import BAD_KINDS, make_bad_input
    from medgen_ray.samples.generator import make_corpus

    truth = make_corpus(args.out, args.videos, args.seconds, args.seed)
    if args.bad:
        for kind in BAD_KINDS:
            make_bad_input(kind, args.out)
    from medgen_ray.samples.generator import truth_path

    print(f"{len(truth)} videos in {args.out} (truth in {truth_path(args.out)})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The `medgen` argument parser with every subcommand."""
    p = argparse.ArgumentParser(prog="medgen", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", help="YAML config file")
        sp.add_argument("overrides", nargs="*", help="a.b.c=value overrides")

    for name, text, fn in (
        ("demo", "generate videos, train probes, curate on local Ray, train and serve a LoRA, evaluate", cmd_demo),
        ("curate", "run the curation job", cmd_curate),
        ("precompute", "encode curated clips into latent + text-embedding shards", cmd_precompute),
        ("train", "LoRA fine-tuning on Ray Train from precomputed shards", cmd_train),
        ("serve", "run the generation service (Ray Serve) until Ctrl-C", cmd_serve),
    ):
        sp = sub.add_parser(name, help=text)
        with_config(sp)
        sp.set_defaults(fn=fn)
    ca = sub.add_parser("cache", help="step caching").add_subparsers(dest="what", required=True)
    sp = ca.add_parser("calibrate", help="MagCache ratios of serve.model into a JSON file (serve.cache.mag_ratios)")
    sp.add_argument("--out", required=True, help="JSON file (local or s3://); other models' ratios in it are kept")
    sp.add_argument("--steps", type=int, help="denoising steps (default serve.default_steps)")
    sp.add_argument("--prompt", help="the calibration prompt (default: a surgical scene)")
    with_config(sp)
    sp.set_defaults(fn=cmd_cache_calibrate)
    sp = sub.add_parser("generate", help="generate a video through a running service")
    sp.add_argument("prompt")
    sp.add_argument("--url", default="http://127.0.0.1:8000")
    sp.add_argument("--out", default="video.mp4")
    sp.add_argument("--token", help="bearer token (default: MEDGEN_SERVE_TOKEN)")
    sp.add_argument("--negative-prompt", dest="negative_prompt")
    sp.add_argument("--height", type=int)
    sp.add_argument("--width", type=int)
    sp.add_argument("--num-frames", dest="num_frames", type=int)
    sp.add_argument("--steps", type=int)
    sp.add_argument("--guidance", type=float)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--adapter", default="base")
    sp.set_defaults(fn=cmd_generate)

    sp = sub.add_parser("evaluate", help="Med-VBench: generate from prompts (or take a folder of mp4s) and score")
    sp.add_argument("--videos", help="score this folder of mp4s (prompt from <name>.txt or the file name)")
    sp.add_argument("--prompts", help="prompt file, one per line")
    sp.add_argument("--out", help="output folder (evaluate.output)")
    with_config(sp)
    sp.set_defaults(fn=cmd_evaluate)

    st = sub.add_parser("study", help="the doctors' study (Label Studio)").add_subparsers(dest="what", required=True)
    sp = st.add_parser("create", help="a blinded study of an evaluation's videos: pairs, distortion tasks, key")
    sp.add_argument("--eval", required=True, help="a `medgen evaluate` output folder")
    sp.add_argument("--out", required=True, help="the study folder (local or s3://)")
    sp.add_argument("--model", required=True, help="the focus model (e.g. MedGen), compared with a random other")
    sp.add_argument("--raters", default="r1,r2,r3", help="comma-separated rater names")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--media", default="local-files", help="local-files | presigned | an http(s) URL prefix")
    sp.add_argument("--document-root", help="Label Studio's LOCAL_FILES_DOCUMENT_ROOT (for local-files)")
    sp.add_argument("--expires", type=int, default=7 * 24 * 3600, help="presigned URLs' lifetime, seconds")
    sp.set_defaults(fn=cmd_study_create)
    sp = st.add_parser("results", help="unblind raters' answers: Fig. 6, Cohen's/Fleiss' kappa, warping error")
    sp.add_argument("--study", required=True)
    sp.add_argument("answers", nargs="+", help="Label Studio JSON exports and/or CSVs (study,rater,task_id,aspect,choice)")
    sp.add_argument("--out", help="default <study>/results")
    sp.add_argument("--eval", help="the evaluation: its per-model table and report gain the warping error and Total")
    sp.set_defaults(fn=cmd_study_results)

    ds = sub.add_parser("dataset", help="datasets").add_subparsers(dest="what", required=True)
    sp = ds.add_parser("view", help="derive a dataset from a scored one: other thresholds, stages disabled")
    sp.add_argument("dataset")
    sp.add_argument("--out", required=True)
    sp.add_argument("--disable", help="comma-separated clip filters: motion,borders,aesthetic,technical,ocr")
    with_config(sp)
    sp.set_defaults(fn=cmd_dataset_view)
    sp = ds.add_parser("dedup", help="remove near-duplicate clips (re-uploads, re-encodes, rescales, trims)")
    sp.add_argument("dataset")
    sp.add_argument("--out", required=True)
    with_config(sp)
    sp.set_defaults(fn=cmd_dataset_dedup)

    ex = sub.add_parser("experiment", help="experiments").add_subparsers(dest="what", required=True)
    sp = ex.add_parser("run", help="arms (data views / training settings) -> one LoRA each -> Med-VBench side by side")
    with_config(sp)
    sp.set_defaults(fn=cmd_experiment)

    lo = sub.add_parser("lora", help="LoRA files").add_subparsers(dest="what", required=True)
    sp = lo.add_parser("merge", help="fuse a LoRA into the base weights and save the pipeline")
    sp.add_argument("lora", help="LoRA file or folder (either export format)")
    sp.add_argument("--out", required=True)
    sp.add_argument("--model", default="hunyuan_video")
    sp.add_argument("--weights", help="base pipeline folder (default: the model's hub id)")
    sp.add_argument("--scale", type=float, default=1.0)
    sp.set_defaults(fn=cmd_lora_merge)
    sp = lo.add_parser("export", help="diffusers + ComfyUI files from a checkpoint folder or another export")
    sp.add_argument("source", help="checkpoint folder (optim_state.pt) or LoRA file/folder")
    sp.add_argument("--out", required=True)
    sp.add_argument("--model", default="hunyuan_video")
    sp.add_argument("--weights")
    sp.add_argument("--alpha", type=float, help="override the LoRA alpha stored in the checkpoint")
    sp.set_defaults(fn=cmd_lora_export)

    sp = sub.add_parser("caption", help="caption the clips of DATASET whose captions are pending")
    sp.add_argument("dataset")
    with_config(sp)
    sp.set_defaults(fn=cmd_caption)

    sp = sub.add_parser("report", help="write DATASET/report/report.html (funnel, histograms, contact sheets)")
    sp.add_argument("dataset")
    sp.add_argument("--out", help="folder for the page (default DATASET/report)")
    with_config(sp)
    sp.set_defaults(fn=cmd_report)

    sp = sub.add_parser("review", help="draw clips per stage for human QA, or score filled verdicts")
    sp.add_argument("dataset")
    sp.add_argument("--stage", default="kept", help="kept, or a stage whose rejects to review")
    sp.add_argument("--sample", type=int, default=200)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--score", metavar="CSV", help="score a filled review CSV instead of drawing")
    sp.set_defaults(fn=cmd_review)

    cls = sub.add_parser("classifier", help="train the relevance and category classifiers").add_subparsers(dest="what", required=True)
    sp = cls.add_parser("train-text", help="metadata classifier from a CSV of text,label")
    sp.add_argument("--csv", required=True)
    sp.add_argument("--embedder", default="minilm")
    sp.add_argument("--out", required=True)
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(fn=cmd_train_text)
    sp = cls.add_parser("train-frames", help="frame linear probe from a CSV of path,label")
    sp.add_argument("--csv", required=True)
    sp.add_argument("--clip-model", default="clip/vit-b-32")
    sp.add_argument("--weights")
    sp.add_argument("--out", required=True)
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(fn=cmd_train_frames)
    sp = cls.add_parser("train-categories", help="prompt/caption category probe from a dataset's captions "
                                                 "(or a CSV of text,category)")
    sp.add_argument("--dataset", help="curated dataset: learns caption -> category of its kept clips")
    sp.add_argument("--csv", help="CSV with text,category")
    sp.add_argument("--text-column", default="caption_detailed")
    sp.add_argument("--limit", type=int, default=5000, help="captions sampled from the dataset")
    sp.add_argument("--embedder", default="minilm")
    sp.add_argument("--out", required=True)
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(fn=cmd_train_categories)

    w = sub.add_parser("weights", help="model weights").add_subparsers(dest="what", required=True)
    sp = w.add_parser("list", help="registered models")
    sp.set_defaults(fn=cmd_weights_list)
    sp = w.add_parser("pull", help="pre-stage weights into a folder or bucket for offline clusters")
    sp.add_argument("names", nargs="+")
    sp.add_argument("--dest", required=True)
    sp.set_defaults(fn=cmd_weights_pull)
    sp = w.add_parser("check", help="every model a job will load, and whether its weights are reachable here")
    sp.add_argument("--config")
    sp.add_argument("--job", action="append", choices=["curate", "precompute", "train", "serve", "evaluate",
                                                       "experiment"], help="default: every job")
    sp.add_argument("overrides", nargs="*", help="a.b=c")
    sp.set_defaults(fn=cmd_weights_check)

    sp = sub.add_parser("samples", help="write generated sample videos with their truth")
    sp.add_argument("--out", required=True)
    sp.add_argument("--videos", type=int, default=10)
    sp.add_argument("--seconds", type=float, default=30.0)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--bad", action="store_true", help="also write one file of every broken kind")
    sp.set_defaults(fn=cmd_samples)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of `medgen`; returns the exit code (2 for a bad config)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-v", "--verbose") for a in argv):  # anywhere on the line: Ray's own output on the console
        argv = [a for a in argv if a not in ("-v", "--verbose")]
        os.environ[VERBOSE_ENV] = "1"
    # Our INFO lines; libraries' (open_clip, transformers, ...) only with -v.
    logging.basicConfig(level=logging.INFO if verbose() else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("medgen_ray").setLevel(logging.INFO)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `a.b=v` overrides may follow options (`dataset view DS --out V key=value`): argparse takes
    # positionals in one run, so the ones after an option arrive here and join the overrides.
    if extra and hasattr(args, "overrides") and all("=" in x and not x.startswith("-") for x in extra):
        args.overrides = list(args.overrides or []) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.fn(args)
    except ConfigError as exc:
        print(f"medgen: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, KeyError, ValueError, WeightsUnavailable) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"medgen: error: {msg}", file=sys.stderr)
        return 2
    except UnsupportedVersion as exc:  # one line naming the supported range, no traceback
        print(f"medgen: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

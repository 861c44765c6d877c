"""`medgen demo`: a real, checkable curation run on an embedded local Ray with tiny models.

1. Generates a corpus whose truth is known per second (plus broken files), and, separately,
   training material that is not in the corpus.
2. Trains the metadata classifier (real MiniLM embeddings) and the frame linear probe (tiny
   CLIP features: random but fixed, so a probe on them separates the generated classes), and
   calibrates tau from adjacent frames of one scene vs. frames across a cut.
3. Runs the curation job, then checks the dataset against the generator's truth: precision
   and recall of kept seconds, and each filter's hits on the defects planted for it.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from medgen_ray.config import AppConfig, derive
from medgen_ray.curate.classifiers import train_frame_probe, train_text_classifier
from medgen_ray.samples.bad import BAD_KINDS, UNUSUAL_KINDS, make_bad_input
from medgen_ray.samples.generator import make_corpus
from medgen_ray.samples.scenes import ALL_SCENES, SCENES
from medgen_ray.samples.texts import make_labeled_texts

# Planted defect -> the stage whose filter should catch it. `static` is caught when its clips are
# labelled static (rejecting them is optional: curate.quality.motion.reject_static).
DEFECT_STAGE = {"low_resolution": "resolution", "letterbox": "borders", "burned_text": "ocr", "static": "motion"}


def write_text_training(path: Path, n_per_class: int, seed: int) -> None:
    """Write labelled generated titles and descriptions for the metadata classifier."""
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for text, label in make_labeled_texts(n_per_class, seed):
            w.writerow([text, label])


def write_frame_training(folder: Path, n_per_class: int, seed: int) -> Path:
    """Labelled PNG frames decoded from freshly encoded H.264 videos (not the demo corpus), so the
    probe learns from frames that went through the same codec as the ones it will judge."""
    import av
    import cv2

    from medgen_ray.samples.generator import Segment, VideoSpec, render_video

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    per_scene = max(4, n_per_class // 3)
    instances, fps = 4, 6
    seconds = max(2, math.ceil(per_scene / instances))
    for k, scene in enumerate(ALL_SCENES):
        for inst in range(instances):
            video = folder / f"_{scene}_{inst}.mp4"
            render_video(VideoSpec("t", [Segment(scene, seconds)], 640, 480, fps, seed=seed + 97 * k + inst), video)
            with av.open(str(video)) as container:
                for j, frame in enumerate(container.decode(video=0)):
                    if j % fps:
                        continue
                    img = cv2.resize(frame.to_ndarray(format="rgb24"), (320, 240), interpolation=cv2.INTER_AREA)
                    name = f"{scene}_{inst}_{j:04d}.png"
                    Image.fromarray(img).save(folder / name)
                    rows.append((name, int(SCENES[scene].medical)))
            video.unlink()
    path = folder / "labels.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        w.writerows(rows)
    return path


def calibrate_tau(clip_model: str, seed: int, n: int = 24) -> dict[str, float]:
    """tau halfway between adjacent-second similarity within a scene and similarity across a cut."""
    from medgen_ray.models.clip import square_crop
    from medgen_ray.models.registry import load_model

    enc = load_model(clip_model, kind="clip")
    rng = np.random.default_rng(seed)

    def embed(img: np.ndarray) -> np.ndarray:
        return enc.encode_images(square_crop(img, enc.image_size)[None])[0]

    adjacent, cuts = [], []
    from medgen_ray.samples.scenes import make_scene

    for i in range(n):
        a, b = rng.choice(len(ALL_SCENES), size=2, replace=False)
        sa = make_scene(ALL_SCENES[a], 240, 320, np.random.default_rng(seed + i))
        sb = make_scene(ALL_SCENES[b], 240, 320, np.random.default_rng(seed + 1000 + i))
        t = float(rng.uniform(0, 20))
        ea, ea1, eb = embed(sa.render(t)), embed(sa.render(t + 1)), embed(sb.render(t))
        adjacent.append(float(ea @ ea1))
        cuts.append(float(ea @ eb))
    lo, hi = float(np.percentile(adjacent, 5)), float(np.percentile(cuts, 95))
    return {"tau": (lo + hi) / 2, "adjacent_p5": lo, "cut_p95": hi}


def check_against_truth(output: str, truth: dict[str, Any], bad: dict[str, str]) -> dict[str, Any]:
    """Precision and recall of kept seconds and each filter's hits, against the generator's truth."""
    import pyarrow.dataset as pads

    out = Path(output)
    manifest = pads.dataset(out / "manifest", format="parquet").to_table().to_pylist() if (out / "manifest").exists() else []
    rejects = pads.dataset(out / "rejects", format="parquet").to_table().to_pylist() if (out / "rejects").exists() else []
    rejected_at = {r["video_id"]: r["reject_stage"] for r in rejects if not r["clip_id"]}
    kept_total = kept_medical = 0
    kept_by_video: dict[str, set[int]] = {}
    for clip in manifest:
        secs = truth.get(clip["video_id"], {}).get("seconds", [])
        span = range(int(math.floor(clip["t_start"])), int(math.ceil(clip["t_end"])))
        for s in span:
            if s < len(secs):
                kept_total += 1
                kept_medical += secs[s]["medical"]
                kept_by_video.setdefault(clip["video_id"], set()).add(s)
    eligible_medical = recalled = 0
    for vid, t in truth.items():
        spec = t["spec"]
        if min(spec["width"], spec["height"]) < 480 or rejected_at.get(vid) == "metadata":
            continue
        # Seconds that a filter is meant to drop are not owed to recall.
        owed_not = {s for d in t["defects"] if d["kind"] in ("letterbox", "burned_text")
                    for s in range(int(d["t_start"]), int(math.ceil(d["t_end"])))}
        for s, sec in enumerate(t["seconds"]):
            if sec["medical"] and s not in owed_not:
                eligible_medical += 1
                recalled += s in kept_by_video.get(vid, set())
    candidates: dict[str, list[dict]] = {}
    for r in manifest + [r for r in rejects if r["clip_id"]]:
        candidates.setdefault(r["video_id"], []).append(r)

    def caught_by(clip: dict, stage: str) -> bool:
        if stage == "motion":
            return clip.get("label_camera_motion") == "static"
        return clip.get("reject_stage") == stage

    defects: dict[str, dict[str, Any]] = {}
    for vid, t in truth.items():
        for d in t["defects"]:
            stage = DEFECT_STAGE[d["kind"]]
            entry = defects.setdefault(d["kind"], {"planted": 0, "reached": 0, "caught": 0, "by": stage,
                                                   "seconds_in_kept_clips": 0})
            entry["planted"] += 1
            if "t_start" not in d:  # whole-video defect, filtered before segmentation
                entry["reached"] += 1
                entry["caught"] += rejected_at.get(vid) == stage
                continue
            hit = [c for c in candidates.get(vid, []) if c["t_start"] < d["t_end"] and c["t_end"] > d["t_start"]]
            if hit:  # some clip was cut from the defective stretch: did the filter see it?
                entry["reached"] += 1
                entry["caught"] += all(caught_by(c, stage) for c in hit)
            kept = kept_by_video.get(vid, set())
            entry["seconds_in_kept_clips"] += sum(
                1 for s in range(int(d["t_start"]), int(math.ceil(d["t_end"]))) if s in kept)
    off_topic = [v for v, t in truth.items() if not any(s["medical"] for s in t["seconds"])]
    defects["off_topic_title"] = {"planted": len(off_topic), "reached": len(off_topic), "by": "metadata",
                                  "caught": sum(rejected_at.get(v) == "metadata" for v in off_topic)}
    defects["broken_file"] = {"planted": len(bad), "reached": len(bad), "by": "probe",
                              "caught": sum(rejected_at.get(Path(p).stem) == "probe" for p in bad.values())}
    return {
        "kept_seconds": kept_total,
        "precision_kept_seconds": kept_medical / kept_total if kept_total else float("nan"),
        "recall_medical_seconds": recalled / eligible_medical if eligible_medical else float("nan"),
        "eligible_medical_seconds": eligible_medical,
        "defects": defects,
    }


def with_family(app: AppConfig, model: str) -> AppConfig:
    """The demo config on another family's tiny twin: precompute, training, serving and the
    evaluation's label take it; every side the demo config sets is rounded to the family's
    multiple (sides it leaves unset are the family's own, filled in by validation)."""
    from medgen_ray.models.families import family_of

    fam = family_of(model)

    def side(v: int) -> int:
        return max(fam.spatial, round(v / fam.spatial) * fam.spatial)

    p, v, s = app.precompute, app.train.validation, app.serve
    models = [{"name": f"{fam.label}-tiny" if m.adapter == "base" else m.name, "adapter": m.adapter}
              for m in app.evaluate.models]
    updates = {"precompute.model": f"{fam.name}/tiny", "train.model": f"{fam.name}/tiny",
               "train.validation.height": side(v.height), "train.validation.width": side(v.width),
               "serve.model": f"{fam.name}/tiny", "evaluate.models": models}
    if "buckets" in p.model_fields_set:
        updates["precompute.buckets"] = [{"frames": b.frames, "height": side(b.height), "width": side(b.width)}
                                         for b in p.buckets]
    for name in ("default_height", "default_width"):
        if name in s.model_fields_set:
            updates[f"serve.{name}"] = side(getattr(s, name))
    return derive(app, updates)


def run_demo(app: AppConfig) -> dict[str, Any]:
    """The demo: samples, classifiers, curation with a self-check, then LoRA, service and Med-VBench."""
    from medgen_ray.runner import run_curate

    d = app.demo
    if d.model:
        app = with_family(app, d.model)
    work = Path(d.workdir)
    corpus, train = work / "corpus", work / "train"
    train.mkdir(parents=True, exist_ok=True)
    print(f"[demo] generating {d.videos} videos of {d.seconds:g} s, {len(BAD_KINDS)} broken files and a "
          f"variable-frame-rate video in {corpus}")
    truth = make_corpus(corpus, d.videos, d.seconds, d.seed)
    bad = {k: str(make_bad_input(k, corpus)) for k in BAD_KINDS}
    for kind in UNUSUAL_KINDS:  # not broken: curated like any video (this one is noise, so not medical)
        make_bad_input(kind, corpus)

    cur = app.curate
    text_csv = train / "texts.csv"
    write_text_training(text_csv, d.train_texts_per_class, d.seed + 1000)
    text_probe = str(train / "metadata.probe.npz")
    rep = train_text_classifier(str(text_csv), cur.metadata.embedder, text_probe)
    print(f"[demo] metadata classifier ({cur.metadata.embedder}): held-out accuracy {rep.test_accuracy:.3f} "
          f"on {rep.n_test} texts")
    frame_csv = write_frame_training(train / "frames", d.train_frames_per_class, d.seed + 2000)
    frame_probe = str(train / "frames.probe.npz")
    rep_f = train_frame_probe(str(frame_csv), cur.classify.clip_model, frame_probe, cur.classify.weights)
    print(f"[demo] frame probe ({cur.classify.clip_model}): held-out accuracy {rep_f.test_accuracy:.3f} "
          f"on {rep_f.n_test} frames")
    tau = calibrate_tau(cur.classify.clip_model, d.seed + 3000)
    print(f"[demo] tau {tau['tau']:.4f} (adjacent-second p5 {tau['adjacent_p5']:.4f}, across-cut p95 "
          f"{tau['cut_p95']:.4f})")

    app = derive(app, {"curate.source.kind": "files", "curate.source.uris": [str(corpus)],
                       "curate.metadata.classifier_path": text_probe, "curate.classify.probe_path": frame_probe,
                       "curate.segment.similarity_threshold": tau["tau"],
                       **({"curate.output": str(work / "dataset")} if cur.output == "medgen_out" else {})})
    cur = app.curate
    summary = run_curate(app)
    check = check_against_truth(cur.output, truth, bad)
    check["training"] = {"text_accuracy": rep.test_accuracy, "frame_accuracy": rep_f.test_accuracy, **tau}
    Path(cur.output, "self_check.json").write_text(json.dumps(check, indent=1))
    print(f"[demo] self-check: precision of kept seconds {check['precision_kept_seconds']:.3f}, recall of "
          f"medical seconds {check['recall_medical_seconds']:.3f} ({check['kept_seconds']} s kept)")
    print("[demo]   defect           planted reached caught  by          (a defect is reached when a "
          "candidate clip covers it)")
    for kind, e in check["defects"].items():
        extra = f"  {e['seconds_in_kept_clips']} s left in kept clips" if "seconds_in_kept_clips" in e else ""
        print(f"[demo]   {kind:16s} {e['planted']:7d} {e['reached']:7d} {e['caught']:6d}  {e['by']:11s}{extra}")
    from medgen_ray.curate.dataset_report import write_dataset_report

    page = write_dataset_report(cur.output, cur)
    print(f"[demo] dataset: {cur.output} (manifest/, rejects/, clips/, summary.json, self_check.json)")
    print(f"[demo] report: {page}")
    result = {"summary": summary, "check": check}
    if d.train_lora:
        app, result["train"] = train_demo_lora(app, work)
        result["serve"] = serve_demo(app, work, result["train"]["lora"])
    return result


def serve_demo(app: AppConfig, work: Path, lora: str) -> dict[str, Any]:
    """Serve the base model and the new LoRA on 127.0.0.1 and generate one prompt with each."""
    from ray import serve

    from medgen_ray.core.ports import free_port
    from medgen_ray.serve.client import generate
    from medgen_ray.serve.launch import start_serve

    cfg = app.serve
    updates: dict[str, Any] = {"serve.adapters": {**cfg.adapters, "medgen": lora}}
    if cfg.store == "medgen_videos":
        updates["serve.store"] = str(work / "videos")
    if cfg.port == 0:
        updates["serve.port"] = free_port()
    app = derive(app, updates)
    url = start_serve(app)
    out = {}
    try:
        prompt = app.train.validation.prompts[0]
        for adapter in ("base", "medgen"):
            path = str(work / f"generated_{adapter}.mp4")
            job = generate(url, {"prompt": prompt, "adapter": adapter, "seed": 0}, path, poll_s=0.2,
                           log=open(os.devnull, "w"))
            out[adapter] = {"job": job["id"], "path": path, "seconds": job.get("generation_seconds")}
            print(f"[demo] served ({adapter}): job {job['id']} -> {path} "
                  f"({job.get('generation_seconds') or 0:.1f} s)")
        out["evaluate"] = evaluate_demo(app, work, url)
        print(f"[demo] service was at {url}/ (web page, API docs at /docs); `medgen serve` runs it until Ctrl-C")
    finally:
        serve.shutdown()
    return out


def train_demo_lora(app: AppConfig, work: Path) -> tuple[AppConfig, dict[str, Any]]:
    """Latents of the kept clips, then a LoRA on the tiny twin with two DDP workers; returns the
    config those jobs ran with and the training summary."""
    import csv

    from medgen_ray.runner import run_precompute, run_train

    latents = str(work / "latents") if app.precompute.output == "medgen_latents" else app.precompute.output
    app = derive(app, {"precompute.dataset": app.curate.output, "precompute.output": latents, "train.data": latents,
                       **({"train.storage_path": str(work / "runs")} if app.train.storage_path == "medgen_runs"
                          else {})})
    pre, tr = app.precompute, app.train
    encoded = run_precompute(app)
    print(f"[demo] latents: {encoded.get('total_rows', 0)} clips in buckets {encoded.get('buckets', {})} "
          f"({encoded['rejected']} rejected) -> {pre.output}")
    result = run_train(app)
    losses = [float(r["loss"]) for r in csv.DictReader(open(Path(result["run_dir"]) / "loss.csv"))]
    k = max(1, len(losses) // 5)
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    print(f"[demo] LoRA ({tr.num_workers} DDP workers, {result['steps']} steps): loss {first:.3f} -> {last:.3f} "
          f"(mean of first/last {k} steps)")
    print(f"[demo] LoRA files: {result['lora']} (diffusers + ComfyUI); loss curve and validation videos in "
          f"{result['run_dir']}")
    return app, {**result, "loss_first": first, "loss_last": last}


DEMO_PROMPTS = [
    "An endoscopic view of pink gastric mucosa with a metal instrument moving across the frame.",
    "A grey ultrasound fan of the liver with speckled tissue and a bright boundary.",
    "An anatomy diagram of the heart with labelled chambers on a plain background.",
    "A laparoscopic view of the gallbladder being lifted with a grasper.",
]


def evaluate_demo(app: AppConfig, work: Path, url: str) -> dict[str, Any]:
    """Med-VBench of base vs the new LoRA on a few prompts, generated through the service."""
    from medgen_ray.runner import run_evaluate

    ev = app.evaluate
    prompts = work / "eval_prompts.txt"
    prompts.write_text("\n".join(DEMO_PROMPTS) + "\n")
    updates: dict[str, Any] = {"evaluate.prompts": str(prompts), "evaluate.url": url}
    if ev.medical_probe is None and app.curate.classify.clip_model == ev.clip_model:
        updates["evaluate.medical_probe"] = app.curate.classify.probe_path  # the frame probe the curation used
    if ev.output == "medgen_eval":
        updates["evaluate.output"] = str(work / "eval")
    app = derive(app, updates)
    result = run_evaluate(app)
    for r in result["per_model"]:
        print(f"[demo] Med-VBench {r['model']:18s} SC {r['subject_consistency']:.2f} BC "
              f"{r['background_consistency']:.2f} MS {r['motion_smoothness']:.2f} IQ(piqe) {r['imaging_quality']:.2f} "
              f"dynamic {r['dynamic_degree']:.0f} text {r['text_alignment']:.2f} medical {r['medical_frames']:.1f}")
    print(f"[demo] Med-VBench report: {result['report']} (tiny models: plumbing, not quality)")
    models = [m.name for m in app.evaluate.models]
    out = app.evaluate.output
    print(f"[demo] doctors' study of these videos ({models[-1]} against {', '.join(models[:-1])}), for Label Studio:\n"
          f"[demo]   medgen study create --eval {out} --out {work / 'study'} --model {models[-1]} --raters r1,r2,r3 "
          f"--document-root {work}\n"
          f"[demo]   medgen study results --study {work / 'study'} EXPORTS... --eval {out}")
    return result

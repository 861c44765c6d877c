"""The doctors' study of the MedGen paper (Fig. 6, Tables 7 and 9), as files for Label Studio.

`create_study` takes a Med-VBench output (its per-video rows and videos) and writes a blinded
study: for each prompt, the focus model's video beside a randomly chosen other model's video
(left/right drawn at random), and a distortion task for every video. Raters see anonymous video
copies (`media/<random>.mp4`) and task ids; which model made which video is only in the sealed
key file (`key.sealed.json`), which `medgen study results` reads to unblind. Each rater gets a
Label Studio project of their own per task kind, tasks in a fresh random order.

Layout under the study folder (local or s3://):
  study.json                    study id, raters, counts, prompts left out and why (no model names)
  key.sealed.json               the key: task -> models and videos (keep it from the raters)
  media/<anon>.mp4              the videos under names that say nothing
  label_studio/pairs.xml        labeling config: two videos side by side, three aspects, "both lose"
  label_studio/distortion.xml   labeling config: one video, no / minor / moderate / severe
  label_studio/<rater>.pairs.json, <rater>.distortion.json   each rater's import file
  ratings_template.csv          the CSV columns for groups that collect ratings another way
"""

from __future__ import annotations

import html
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import fsspec
import numpy as np

ASPECTS = ("text_alignment", "medical_accuracy", "visual_quality")
PAIR_CHOICES = ("left", "right", "both lose")
DISTORTION_LEVELS = ("no", "minor", "moderate", "severe")
ASPECT_QUESTIONS = {
    "text_alignment": "Text alignment: which video shows what the prompt describes?",
    "medical_accuracy": "Medical accuracy: which video is medically correct (anatomy, instruments, procedure)?",
    "visual_quality": "Visual quality: which video is clearer and more natural to watch?",
}
# Ours: the paper's Table 7 wording is not available to this project; these are the four levels
# as the study asks them, with a video counted as warped when >= 2 raters say moderate or severe.
DISTORTION_CRITERIA = {
    "no": "No distortion: anatomy, instruments and motion look physically plausible throughout.",
    "minor": "Minor: small, brief artefacts (flicker, slight texture warping) that do not change what is shown.",
    "moderate": "Moderate: visible warping of anatomy or instruments, or objects that merge, appear or vanish, "
                "for part of the video.",
    "severe": "Severe: the anatomy or the scene is broken for most of the video; the content cannot be trusted.",
}
CSV_COLUMNS = ("study", "rater", "task_id", "aspect", "choice")


def pairs_config() -> str:
    """Label Studio labeling config of the pairwise tasks."""
    choices = "".join(f'<Choice value="{c}"/>' for c in PAIR_CHOICES)
    questions = "".join(
        f'<Header value="{html.escape(q)}" size="5"/>'
        f'<Choices name="{a}" toName="video_left" choice="single-radio" required="true" showInline="true">'
        f"{choices}</Choices>" for a, q in ASPECT_QUESTIONS.items())
    return ("<View>\n"
            '  <Header value="Prompt: $prompt" size="4"/>\n'
            '  <View style="display: flex; gap: 12px;">\n'
            '    <View style="flex: 1; min-width: 0;"><Header value="Left" size="5"/>'
            '<Video name="video_left" value="$video_left" height="320"/></View>\n'
            '    <View style="flex: 1; min-width: 0;"><Header value="Right" size="5"/>'
            '<Video name="video_right" value="$video_right" height="320"/></View>\n'
            "  </View>\n"
            f"  {questions}\n"
            "</View>\n")


def distortion_config() -> str:
    """Label Studio labeling config of the distortion tasks, the criteria as instructions."""
    criteria = "".join(f'<Header value="{html.escape(v)}" size="6"/>' for v in DISTORTION_CRITERIA.values())
    choices = "".join(f'<Choice value="{c}"/>' for c in DISTORTION_LEVELS)
    return ("<View>\n"
            '  <Video name="video" value="$video"/>\n'
            '  <Header value="How distorted is this video?" size="5"/>\n'
            f"  {criteria}\n"
            f'  <Choices name="distortion" toName="video" choice="single-radio" required="true" showInline="true">'
            f"{choices}</Choices>\n"
            "</View>\n")


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def _media_url(fs, path: str, media: str, document_root: str | None, expires_s: int) -> str:
    """How Label Studio reaches a video: its local-files storage (`/data/local-files/?d=` a path
    under LOCAL_FILES_DOCUMENT_ROOT), a presigned URL (s3://), or an http(s) prefix."""
    if media == "local-files":
        if not document_root:
            raise ValueError("study: --media local-files needs --document-root (Label Studio's "
                             "LOCAL_FILES_DOCUMENT_ROOT, a folder above the study)")
        rel = os.path.relpath(path, document_root)
        if rel.startswith(".."):
            raise ValueError(f"study: {path} is not under the document root {document_root}")
        return f"/data/local-files/?d={rel}"
    if media == "presigned":
        return fs.sign(path, expiration=expires_s)
    if media.startswith(("http://", "https://")):
        return f"{media.rstrip('/')}/{path.rsplit('/', 1)[-1]}"
    raise ValueError(f"study: media {media!r}: choices local-files, presigned, or an http(s) URL prefix")


def create_study(evaluation: str, out: str, focus: str, raters: list[str], *, seed: int = 0,
                 media: str = "local-files", document_root: str | None = None,
                 expires_s: int = 7 * 24 * 3600) -> dict[str, Any]:
    """Write a blinded study of `evaluation`'s videos under `out`; returns study.json's content."""
    from medgen_ray.evaluate.job import read_per_video

    if len(raters) < 2 or len(set(raters)) != len(raters) or any(not r or "/" in r for r in raters):
        raise ValueError(f"study: raters must be two or more distinct names without '/', got {raters}")
    df = read_per_video(evaluation)
    if not len(df):
        raise FileNotFoundError(f"study: no per-video rows under {evaluation!r} (run `medgen evaluate` first)")
    ok = df[df["error"].fillna("") == ""] if "error" in df else df
    models = sorted(ok["model"].unique())
    if focus not in models:
        raise ValueError(f"study: model {focus!r} has no scored videos in {evaluation!r}; models: {models}")
    if len(models) < 2:
        raise ValueError(f"study: pairs need a second model beside {focus!r}; {evaluation!r} has {models}")
    rng = np.random.default_rng(seed)
    fs, root = fsspec.core.url_to_fs(out)
    if fs.exists(_join(root, "key.sealed.json")):
        raise FileExistsError(f"study: {out!r} already holds a study (key.sealed.json); pick a new folder")
    fs.makedirs(_join(root, "media"), exist_ok=True)
    fs.makedirs(_join(root, "label_studio"), exist_ok=True)
    study_id = uuid.UUID(bytes=rng.bytes(16)).hex[:12]
    src_fs, _ = fsspec.core.url_to_fs(str(ok["video_uri"].iloc[0]))

    anon: dict[str, str] = {}  # video_id -> media path

    def media_of(row) -> str:
        vid = str(row["video_id"])
        if vid not in anon:
            path = _join(root, "media", f"{rng.bytes(8).hex()}.mp4")
            with src_fs.open(src_fs._strip_protocol(str(row["video_uri"])), "rb") as a, fs.open(path, "wb") as b:
                shutil.copyfileobj(a, b)
            anon[vid] = path
        return anon[vid]

    key: dict[str, Any] = {"study_id": study_id, "focus": focus, "pairs": {}, "videos": {}}
    pair_tasks, skipped = [], []
    for n, prompt_index in enumerate(sorted(df["prompt_index"].unique()), start=1):  # errored ones too
        g = ok[ok["prompt_index"] == prompt_index]
        mine = g[g["model"] == focus]
        others = g[g["model"] != focus]
        if not len(mine) or not len(others):
            skipped.append({"prompt_index": int(prompt_index),
                            "reason": f"no video of {'the focus model' if not len(mine) else 'another model'}"})
            continue
        a = mine.iloc[0]
        b = others.iloc[int(rng.integers(len(others)))]
        left, right = (a, b) if rng.random() < 0.5 else (b, a)
        task_id = f"pair-{n:04d}"
        key["pairs"][task_id] = {"prompt_index": int(prompt_index), "prompt": str(a["prompt"]),
                                 "left": str(left["model"]), "right": str(right["model"]),
                                 "left_video": str(left["video_id"]), "right_video": str(right["video_id"])}
        pair_tasks.append({"task_id": task_id, "prompt": str(a["prompt"]),
                           "video_left": _media_url(fs, media_of(left), media, document_root, expires_s),
                           "video_right": _media_url(fs, media_of(right), media, document_root, expires_s)})
    distortion_tasks = []
    for n, (_, r) in enumerate(ok.sort_values(["model", "prompt_index"]).iterrows(), start=1):
        task_id = f"video-{n:04d}"
        key["videos"][task_id] = {"video_id": str(r["video_id"]), "model": str(r["model"])}
        distortion_tasks.append({"task_id": task_id,
                                 "video": _media_url(fs, media_of(r), media, document_root, expires_s)})
    for rater in raters:  # each rater's queue in a fresh random order
        for kind, tasks in (("pairs", pair_tasks), ("distortion", distortion_tasks)):
            order = rng.permutation(len(tasks))
            items = [{"data": {"study": study_id, "rater": rater, **tasks[i]}} for i in order]
            with fs.open(_join(root, "label_studio", f"{rater}.{kind}.json"), "w") as fh:
                json.dump(items, fh, indent=1)
    for name, text in (("pairs.xml", pairs_config()), ("distortion.xml", distortion_config())):
        with fs.open(_join(root, "label_studio", name), "w") as fh:
            fh.write(text)
    with fs.open(_join(root, "ratings_template.csv"), "w") as fh:
        fh.write(",".join(CSV_COLUMNS) + "\n")
    with fs.open(_join(root, "key.sealed.json"), "w") as fh:
        json.dump(key, fh, indent=1)
    if "://" not in out:
        os.chmod(Path(root) / "key.sealed.json", 0o600)
    study = {"study_id": study_id, "raters": raters, "aspects": list(ASPECTS), "pair_tasks": len(pair_tasks),
             "distortion_tasks": len(distortion_tasks), "models": len(models), "media": media,
             "skipped_prompts": skipped, "seed": seed}
    with fs.open(_join(root, "study.json"), "w") as fh:
        json.dump(study, fh, indent=1)
    return study


def read_study(folder: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(study.json, the key) of a study folder."""
    fs, root = fsspec.core.url_to_fs(folder)
    try:
        with fs.open(_join(root, "study.json")) as fh:
            study = json.load(fh)
        with fs.open(_join(root, "key.sealed.json")) as fh:
            key = json.load(fh)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"study: {folder!r} is not a study folder (study.json and key.sealed.json from "
                                "`medgen study create`)") from exc
    if study.get("study_id") != key.get("study_id"):
        raise ValueError(f"study: {folder!r}: study.json ({study.get('study_id')}) and the key "
                         f"({key.get('study_id')}) are of different studies")
    return study, key

"""A small evaluation and three raters' answers with agreement worked out by hand, shared by the
study's unit test (CSV answers) and its Label Studio round trip (answers posted through the API).

Pair items (4 tasks x 3 aspects, in key order), raw labels as raters click them:
  r1: L L L L  R R R R  B B B B      r3 = r1
  r2: L L L R  R R R R  B B B B
  Cohen r1-r2: po = 11/12, pe = (4*3 + 4*5 + 4*4) / 144 = 1/3, kappa = (11/12 - 1/3) / (2/3) = 7/8
  Cohen r1-r3 = 1; r2-r3 = 7/8.
  Fleiss: P_i = 1 for 11 items, 1/3 for item 4: P = 17/18; p = (11, 13, 12) / 36,
  Pe = (121 + 169 + 144) / 1296; kappa = (17/18 - Pe) / (1 - Pe) = 790/862.
Distortion (12 videos: A's 4, B's 4, MedGen's 4):
  A: severe x3 raters (warped); B 1-2: moderate, moderate, no (warped); B 3-4: no x3;
  MedGen: moderate, minor, no (one vote: not warped) -> warping error A 100, B 50, MedGen 0.
  Cohen r1-r2: po = 8/12, pe = (4*4 + 6*2 + 2*2 + 0*4) / 144 = 2/9, kappa = (2/3 - 2/9) / (7/9) = 4/7.
"""

from __future__ import annotations

import numpy as np

MODELS = ("A", "B", "MedGen")
RATERS = ["r1", "r2", "r3"]
PAIR_LABELS = {
    "r1": list("LLLLRRRRBBBB"),
    "r2": list("LLLRRRRRBBBB"),
    "r3": list("LLLLRRRRBBBB"),
}
WORDS = {"L": "left", "R": "right", "B": "both lose"}
KAPPA = {("pairs", "r1-r2"): 7 / 8, ("pairs", "r1-r3"): 1.0, ("pairs", "r2-r3"): 7 / 8,
         ("pairs", "all"): 790 / 862, ("distortion", "r1-r2"): 4 / 7}
WARPING = {"A": 100.0, "B": 50.0, "MedGen": 0.0}


def make_evaluation(folder) -> str:
    """An evaluate output: 3 models x 4 prompts, small mp4s and per-video rows (one errored
    video of B that the study must leave out)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from medgen_ray.core.encode import write_mp4
    from medgen_ray.samples.scenes import make_scene

    rows = []
    rng = np.random.default_rng(0)
    for m in MODELS:
        for i in range(4):
            path = folder / "videos" / m / f"{i}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            scene = make_scene(("endoscopy", "ultrasound")[i % 2], 64, 64, rng)  # the samples' medical scenes
            write_mp4(np.stack([scene.render(t / 8) for t in range(5)]), str(path), fps=8)
            rows.append({"video_id": f"{m}/{i}", "model": m, "prompt": f"prompt {i}", "prompt_index": i,
                         "video_uri": str(path), "error": None, "frames": 5.0, "score_subject_consistency": 90.0})
    rows.append({"video_id": "B/9", "model": "B", "prompt": "prompt 9", "prompt_index": 9,
                 "video_uri": str(folder / "videos" / "B" / "9.mp4"), "error": "generation failed",
                 "frames": None, "score_subject_consistency": None})
    (folder / "per_video").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "per_video" / "part-0.parquet")
    return str(folder)


def distortion_label(rater: str, video: dict) -> str:
    model, index = video["model"], int(video["video_id"].split("/")[1])
    if model == "A":
        return "severe"
    if model == "B":
        return ("moderate", "moderate", "no")[RATERS.index(rater)] if index < 2 else "no"
    return ("moderate", "minor", "no")[RATERS.index(rater)]


def answers(key: dict) -> list[tuple[str, str, str, str]]:
    """(rater, task_id, aspect, choice) of every rater for every task of the study's key."""
    from medgen_ray.evaluate.study import ASPECTS

    items = [(t, a) for t in key["pairs"] for a in ASPECTS]
    out = [(r, t, a, WORDS[PAIR_LABELS[r][n]]) for r in RATERS for n, (t, a) in enumerate(items)]
    out += [(r, t, "distortion", distortion_label(r, v)) for r in RATERS for t, v in key["videos"].items()]
    return out


def expected_fig6(key: dict) -> dict[tuple[str, str], dict[str, int]]:
    """Fig. 6 counts by hand: the majority label of each item (r1's, as r3 = r1), unblinded."""
    from medgen_ray.evaluate.study import ASPECTS

    out: dict[tuple[str, str], dict[str, int]] = {}
    for n, (t, a) in enumerate((t, a) for t in key["pairs"] for a in ASPECTS):
        k = key["pairs"][t]
        other = k["right"] if k["left"] == key["focus"] else k["left"]
        label = WORDS[PAIR_LABELS["r1"][n]]
        verdict = "both_lose" if label == "both lose" else ("win" if k[label] == key["focus"] else "loss")
        c = out.setdefault((other, a), {"win": 0, "both_lose": 0, "loss": 0, "split": 0})
        c[verdict] += 1
    return out

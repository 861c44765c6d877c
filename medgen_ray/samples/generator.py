"""Sample-video generator (PyAV, H.264) that knows the truth of every second it writes.

Used by the demo, the tests and the benchmarks; nothing binary is committed. Each video is a
list of segments (a scene class for N seconds, optionally frozen or with burned-in text), and
the whole video can be letterboxed, low-resolution or at another frame rate.
`<folder>.truth.json` beside the corpus folder records per second whether it is medical, plus
every planted defect.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from medgen_ray.samples.scenes import MEDICAL_SCENES, OTHER_SCENES, SCENES, burn_text, make_scene
from medgen_ray.samples.texts import make_metadata

SUBTITLE_WORDS = (
    "the patient was admitted with acute pain and the team decided to operate the next morning "
    "after imaging confirmed the diagnosis of the surgeon"
).split()


@dataclass
class Segment:
    """A stretch of a generated video: its scene, length and planted defects."""

    scene: str
    seconds: float
    static: bool = False  # frozen frame: same picture for the whole segment
    text_words: int = 0  # burned-in subtitle words on every frame of the segment

    @property
    def medical(self) -> bool:
        return SCENES[self.scene].medical


@dataclass
class VideoSpec:
    """A generated video: segments, size, frame rate, letterbox and metadata."""

    video_id: str
    segments: list[Segment]
    width: int = 640
    height: int = 480
    fps: int = 24
    letterbox: int = 0  # black bar height in px, top and bottom
    gop_seconds: float = 1.0
    seed: int = 0
    title: str = ""
    description: str = ""
    channel: str = ""

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.segments)

    def truth(self) -> dict:
        """Per whole second: medical flag and scene; and the planted defects."""
        per_second, defects, t = [], [], 0.0
        for seg in self.segments:
            for _ in range(int(round(seg.seconds))):
                per_second.append({"medical": seg.medical, "scene": seg.scene})
            if seg.static:
                defects.append({"kind": "static", "t_start": t, "t_end": t + seg.seconds})
            if seg.text_words:
                defects.append({"kind": "burned_text", "words": seg.text_words, "t_start": t, "t_end": t + seg.seconds})
            t += seg.seconds
        if self.letterbox:
            defects.append({"kind": "letterbox", "bar_px": self.letterbox, "t_start": 0.0, "t_end": t})
        if min(self.width, self.height) < 480:
            defects.append({"kind": "low_resolution", "size": [self.width, self.height]})
        return {"seconds": per_second, "defects": defects, "spec": asdict(self)}


def render_video(spec: VideoSpec, path: str | Path) -> None:
    """Encode `spec` as H.264 in an mp4 at `path` (keyframe every gop_seconds)."""
    rng = np.random.default_rng(spec.seed)
    h, w = spec.height, spec.width
    inner_h = h - 2 * spec.letterbox
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=spec.fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        gop = max(1, int(round(spec.gop_seconds * spec.fps)))
        stream.options = {"preset": "veryfast", "crf": "23", "g": str(gop), "keyint_min": str(gop),
                          "sc_threshold": "0"}
        stream.codec_context.time_base = Fraction(1, spec.fps)
        index = 0
        for seg in spec.segments:
            scene = make_scene(seg.scene, inner_h, w, rng)
            n = int(round(seg.seconds * spec.fps))
            frozen = scene.render(0.0) if seg.static else None
            words = list(rng.choice(SUBTITLE_WORDS, size=seg.text_words)) if seg.text_words else []
            for k in range(n):
                img = frozen if frozen is not None else scene.render(k / spec.fps)
                if spec.letterbox:
                    full = np.zeros((h, w, 3), np.uint8)
                    full[spec.letterbox : spec.letterbox + inner_h] = img
                    img = full
                else:
                    img = img.copy()
                if words:
                    img = burn_text(img, words)
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts = index
                index += 1
                for packet in stream.encode(frame):
                    out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def write_info_json(spec: VideoSpec, video_path: Path) -> Path:
    """A yt-dlp style .info.json beside the video (what `--write-info-json` produces)."""
    info = {
        "id": spec.video_id,
        "title": spec.title,
        "description": spec.description,
        "channel": spec.channel,
        "uploader": spec.channel,
        "duration": spec.seconds,
        "license": "Creative Commons Attribution license (reuse allowed)",
        "webpage_url": f"https://www.youtube.com/watch?v={spec.video_id}",
        "extractor": "youtube",
        "width": spec.width,
        "height": spec.height,
        "fps": spec.fps,
        "ext": "mp4",
        "_filename": video_path.name,
    }
    path = video_path.with_suffix(".info.json")
    path.write_text(json.dumps(info, indent=1))
    return path


def plan_corpus(n_videos: int, seconds: float, seed: int = 0) -> list[VideoSpec]:
    """A mixed corpus: mostly medical videos with non-medical stretches and planted defects.

    Roughly: every video alternates medical runs (8-14 s, sometimes two medical scenes back to
    back: a scene cut inside medical content) with non-medical ones; every 5th video is wholly
    non-medical with a non-medical title; one is low resolution; one letterboxed; one has a
    frozen stretch; one has burned-in subtitles; frame rates vary.
    """
    rng = np.random.default_rng(seed)
    specs = []
    for i in range(n_videos):
        vid = f"v{seed:02d}{i:03d}"
        off_topic = i % 5 == 4
        segs: list[Segment] = []
        total = 0.0
        while total < seconds:
            remaining = seconds - total
            if off_topic or (segs and segs[-1].medical and rng.random() < 0.6):
                seg = Segment(str(rng.choice(OTHER_SCENES)), float(min(remaining, rng.integers(4, 9))))
            else:
                seg = Segment(str(rng.choice(MEDICAL_SCENES)), float(min(remaining, rng.integers(8, 15))))
            segs.append(seg)
            total += seg.seconds
        fps = int(rng.choice([24, 25, 30]))
        spec = VideoSpec(vid, segs, fps=fps, seed=seed * 1000 + i, gop_seconds=1.0 if i % 3 else 2.0)
        if i % 7 == 1:
            spec.width, spec.height = 320, 240
        if i % 7 == 2:
            spec.letterbox = 60
        if i % 7 == 3:
            for s in spec.segments:
                if s.medical and s.seconds >= 8:
                    s.static = True
                    break
        if i % 7 == 5:
            for s in spec.segments:
                if s.medical:
                    s.text_words = 30
                    break
        medical_share = sum(s.seconds for s in segs if s.medical) / max(1e-9, spec.seconds)
        spec.title, spec.description, spec.channel = make_metadata(rng, medical=not off_topic and medical_share > 0)
        specs.append(spec)
    return specs


def truth_path(out_dir: str | Path) -> Path:
    """Where a generated corpus's truth is written: beside its folder."""
    out = Path(out_dir)
    return out.parent / f"{out.name}.truth.json"


def make_corpus(out_dir: str | Path, n_videos: int = 10, seconds: float = 30.0, seed: int = 0) -> dict:
    """Render a corpus (mp4 + .info.json per video) and `<folder>.truth.json` beside the folder
    (not in it: every file in the folder is an input of the curation); returns the truth."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    truth = {}
    for spec in plan_corpus(n_videos, seconds, seed):
        path = out / f"{spec.video_id}.mp4"
        if not path.exists():
            tmp = path.with_suffix(".tmp.mp4")
            render_video(spec, tmp)
            tmp.rename(path)
        write_info_json(spec, path)
        truth[spec.video_id] = spec.truth()
    truth_path(out).write_text(json.dumps(truth, indent=1))
    return truth


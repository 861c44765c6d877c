"""Cut each clip to its own mp4 on fsspec storage.

Stream copy when the clip starts and ends on keyframes (exact, and ~100x cheaper than
encoding), else an H.264 re-encode of exactly [t_start, t_end). Writes go to a temporary name
and are renamed (or uploaded), so a killed job never leaves a half clip under a final name, and
an existing clip is not cut again.
"""

from __future__ import annotations

import os
import tempfile
from fractions import Fraction

import av
import fsspec
import numpy as np

from medgen_ray.config import CurateConfig
from medgen_ray.core.decode import open_video
from medgen_ray.core.errors import DataError
from medgen_ray.core.stage import Row, RowStage
from medgen_ray.schema import CLIP_ID, CLIP_URI, CUT_MODE, SOURCE_URI, T_END, T_START, VIDEO_ID


def clip_uri(output: str, video_id: str, clip_id: str) -> str:
    """Where a clip's mp4 is written under the dataset folder."""
    return f"{output.rstrip('/')}/clips/{video_id}/{clip_id}.mp4"


def on_keyframe(keyframes: np.ndarray, t: float, tol: float) -> bool:
    """True when time t lies within tol of a keyframe."""
    return bool(len(keyframes)) and bool(np.min(np.abs(np.asarray(keyframes) - t)) <= tol)


def choose_mode(mode: str, keyframes: np.ndarray, t0: float, t1: float, duration: float, tol: float) -> str:
    """'copy' when both clip ends sit on keyframes (or the end of the file), else 'reencode'; a fixed mode wins."""
    if mode != "auto":
        return mode
    end_ok = on_keyframe(keyframes, t1, tol) or abs(t1 - duration) <= tol
    return "copy" if on_keyframe(keyframes, t0, tol) and end_ok else "reencode"


def copy_clip(src: str, dst: str, t0: float, t1: float) -> None:
    """Remux packets from the keyframe at t0 up to the first keyframe at or after t1."""
    with open_video(src) as inp, av.open(dst, "w", format="mp4") as out:
        s_in = inp.streams.video[0]
        s_out = out.add_stream_from_template(s_in)
        tb = s_in.time_base
        base = s_in.start_time or 0
        start_pts = base + int(round(t0 / tb))
        end_pts = base + int(round(t1 / tb))
        inp.seek(start_pts, stream=s_in, backward=True, any_frame=False)
        offset = None
        for packet in inp.demux(s_in):
            if packet.dts is None or packet.pts is None:
                continue
            if offset is None:
                if not packet.is_keyframe or packet.pts < start_pts - int(round(0.05 / tb)):
                    continue
                offset = packet.pts
            if packet.is_keyframe and packet.pts >= end_pts - int(round(0.05 / tb)) and packet.pts > offset:
                break
            packet.pts -= offset
            packet.dts -= offset
            packet.stream = s_out
            out.mux(packet)
        if offset is None:
            raise DataError(f"no keyframe at {t0:.2f} s for a stream copy")


def reencode_clip(src: str, dst: str, t0: float, t1: float, crf: int, preset: str,
                  box: tuple[int, int, int, int] | None = None, cfr_rate: Fraction | None = None) -> None:
    """H.264 re-encode of exactly [t0, t1), optionally keeping only box = (x, y, w, h). With
    `cfr_rate` the output is on a constant grid at that rate: each tick shows the source frame
    on screen at that time (frames repeated or dropped), as a variable-rate source needs."""
    with open_video(src) as inp, av.open(dst, "w", format="mp4") as out:
        s_in = inp.streams.video[0]
        s_in.thread_type = "AUTO"
        rate = cfr_rate or s_in.average_rate or Fraction(25)
        x, y, w, h = box or (0, 0, s_in.codec_context.width, s_in.codec_context.height)
        s_out = out.add_stream("libx264", rate=rate)
        s_out.width, s_out.height, s_out.pix_fmt = w, h, "yuv420p"
        s_out.options = {"crf": str(crf), "preset": preset}
        s_out.codec_context.time_base = 1 / Fraction(rate)
        tb = float(s_in.time_base)
        base = s_in.start_time or 0
        inp.seek(base + int(t0 / tb), stream=s_in, backward=True)
        index = 0
        step = 1.0 / float(rate)
        held = None  # (CFR) the frame on screen, emitted for every tick until the next one shows

        def emit(frame) -> None:
            nonlocal index
            frame.pts, frame.time_base = index, s_out.codec_context.time_base
            index += 1
            for packet in s_out.encode(frame):
                out.mux(packet)

        for frame in inp.decode(s_in):
            t = (frame.pts - base) * tb
            if cfr_rate is not None and held is not None:
                while t0 + index * step < min(t, t1) - 1e-6:  # ticks before this frame shows
                    emit(_copy_frame(held))
            if t < t0 - 1e-6 and cfr_rate is None:
                continue
            if t >= t1 - 1e-6:
                break
            if box is None:
                frame = frame.reformat(format="yuv420p")
            else:
                rgb = frame.to_ndarray(format="rgb24")[y : y + h, x : x + w]
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            if cfr_rate is None:
                emit(frame)
            else:
                held = frame
        while cfr_rate is not None and held is not None and t0 + index * step < t1 - 1e-6:
            emit(_copy_frame(held))
        for packet in s_out.encode():
            out.mux(packet)
        if index == 0:
            raise DataError(f"no frames between {t0:.2f} s and {t1:.2f} s")


def _copy_frame(frame: av.VideoFrame) -> av.VideoFrame:
    """A new frame with the same picture (an encoder owns the frames it is handed)."""
    return av.VideoFrame.from_ndarray(frame.to_ndarray(format="yuv420p"), format="yuv420p")


def write_atomically(dst: str, make) -> int:
    """Run make(local_tmp_path), then move it to dst (rename, or upload for remote URIs)."""
    fs, path = fsspec.core.url_to_fs(dst)
    local = isinstance(fs, fsspec.implementations.local.LocalFileSystem)
    folder = os.path.dirname(path) if local else None
    if local:
        os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".mp4", dir=folder)
    os.close(fd)
    try:
        make(tmp)
        size = os.path.getsize(tmp)
        if local:
            os.replace(tmp, path)
        else:
            fs.put_file(tmp, path + ".tmp")
            fs.mv(path + ".tmp", path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return size


class CutStage(RowStage):
    """Writes each candidate clip's mp4 (stream copy or exact re-encode, tmp + rename)."""

    name = "cut"
    reads = (VIDEO_ID, SOURCE_URI, CLIP_ID, T_START, T_END, "duration", "keyframes", "bitrate", "fps", "interval_spread")
    adds = (CLIP_URI, CUT_MODE, "clip_bytes")

    def __init__(self, cfg: CurateConfig):
        super().__init__(cfg)

    def setup(self) -> None:
        self.fs, _ = fsspec.core.url_to_fs(self.cfg.output)

    def process(self, row: Row) -> Row:
        c = self.cfg.cut
        t0, t1 = float(row[T_START]), float(row[T_END])
        dst = clip_uri(self.cfg.output, row[VIDEO_ID], row[CLIP_ID])
        vfr = float(row.get("interval_spread") or 0.0) > self.cfg.container.vfr_tolerance
        # a stream copy would keep a variable frame rate: re-encode onto a constant grid
        mode = "reencode" if vfr else choose_mode(c.mode, row["keyframes"], t0, t1, float(row["duration"]),
                                                  c.keyframe_tolerance_s)
        _, path = fsspec.core.url_to_fs(dst)
        if self.fs.exists(path):
            size = int(self.fs.size(path))  # finished by an earlier run: renames are atomic
        elif mode == "copy":
            size = write_atomically(dst, lambda tmp: copy_clip(row[SOURCE_URI], tmp, t0, t1))
        else:
            rate = Fraction(float(row.get("fps") or 0)).limit_denominator(1001) if vfr and row.get("fps") else None
            size = write_atomically(dst, lambda tmp: reencode_clip(row[SOURCE_URI], tmp, t0, t1, c.crf, c.preset,
                                                                   cfr_rate=rate))
        row[CLIP_URI], row[CUT_MODE], row["clip_bytes"] = dst, mode, size
        row["bitrate"] = int(size * 8 / max(1e-6, t1 - t0))
        return row

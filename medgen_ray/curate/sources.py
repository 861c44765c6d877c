"""Sources: video files on any fsspec storage, with yt-dlp style `.info.json` sidecars.

The driver only lists URIs (`list_file_sources`); reading sidecar metadata happens in
`FileSourceStage` on the cluster. A sidecar is what `yt-dlp --write-info-json` writes, so a
bucket of yt-dlp downloads keeps its titles, descriptions, channels and licences.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import PurePosixPath

import fsspec

from medgen_ray.config import SourceConfig
from medgen_ray.core.errors import DataError
from medgen_ray.core.stage import Row, RowStage
from medgen_ray.schema import (
    CHANNEL,
    DESCRIPTION,
    LICENSE,
    REJECT_REASON,
    REJECT_STAGE,
    SOURCE_URI,
    SOURCE_URL,
    TITLE,
    TRANSCRIPT,
    VIDEO_ID,
)

_GLOB = re.compile(r"[*?\[]")


def _sanitize(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", stem)[:64] or "video"


# Files that belong to a video beside them (yt-dlp's sidecar, subtitles, description, thumbnail):
# not inputs of their own.
COMPANION_SUFFIXES = (".info.json", ".vtt", ".srt", ".description", ".jpg", ".jpeg", ".png", ".webp")


def _companion(uri: str, video_stems: set[str]) -> bool:
    name = PurePosixPath(uri).name
    return name.lower().endswith(COMPANION_SUFFIXES) and any(name.startswith(s + ".") for s in video_stems)


def list_file_sources(cfg: SourceConfig) -> list[dict[str, str]]:
    """One {video_id, source_uri, reject_stage, reject_reason} per file under cfg.uris, sorted,
    ids unique and stable. Video files (by extension) go on; any other file is an input too,
    rejected at the source with the reason, except a video's companions (sidecar, subtitles)."""
    exts = tuple(e.lower() for e in cfg.extensions)
    uris: list[str] = []
    for spec in cfg.uris:
        fs, path = fsspec.core.url_to_fs(spec)
        proto = spec.split("://", 1)[0] + "://" if "://" in spec else ""
        if _GLOB.search(path):
            found = fs.glob(path)
        elif fs.isdir(path):
            found = fs.find(path)
        elif fs.exists(path):
            found = [path]
        else:
            raise FileNotFoundError(f"curate.source.uris: {spec!r} does not exist")
        uris.extend(proto + p if proto and not p.startswith(proto) else p
                    for p in found if not fs.isdir(p) and not PurePosixPath(p).name.startswith("."))
    videos = {u for u in uris if u.lower().endswith(exts)}
    stems_of_videos = {PurePosixPath(u).name.rsplit(".", 1)[0] for u in videos}
    uris = sorted(u for u in set(uris) if u in videos or not _companion(u, stems_of_videos))
    stems: dict[str, int] = {}
    for u in uris:
        s = _sanitize(PurePosixPath(u).stem)
        stems[s] = stems.get(s, 0) + 1
    rows = []
    for u in uris:
        s = _sanitize(PurePosixPath(u).stem)
        vid = s if stems[s] == 1 else f"{s}-{hashlib.sha1(u.encode()).hexdigest()[:8]}"
        why = "" if u in videos else (f"source: not a video file ({PurePosixPath(u).suffix or 'no extension'}; "
                                      f"curate.source.extensions: {', '.join(cfg.extensions)})")
        rows.append({VIDEO_ID: vid, SOURCE_URI: u, REJECT_STAGE: "source" if why else "", REJECT_REASON: why})
    return rows


def sidecar_uri(uri: str) -> str:
    """The yt-dlp .info.json sidecar that belongs to a video file."""
    base = uri.rsplit(".", 1)[0]
    return base + ".info.json"


def info_to_row(info: dict) -> dict[str, object]:
    """The metadata columns from a yt-dlp info dict."""
    return {
        SOURCE_URL: str(info.get("webpage_url") or info.get("original_url") or ""),
        TITLE: str(info.get("title") or ""),
        DESCRIPTION: str(info.get("description") or ""),
        CHANNEL: str(info.get("channel") or info.get("uploader") or ""),
        LICENSE: str(info.get("license") or ""),
    }


class FileSourceStage(RowStage):
    """Metadata of a video file from its yt-dlp sidecar, when there is one."""

    name = "source"
    reads = (VIDEO_ID, SOURCE_URI)
    adds = (SOURCE_URL, TITLE, DESCRIPTION, CHANNEL, LICENSE, TRANSCRIPT)

    def __init__(self, cfg: SourceConfig):
        super().__init__(cfg)

    def process(self, row: Row) -> Row:
        uri = row[SOURCE_URI]
        side = sidecar_uri(uri)
        fs, path = fsspec.core.url_to_fs(side)
        meta: dict[str, object] = {SOURCE_URL: uri}
        if fs.exists(path):
            try:
                with fs.open(path, "r") as fh:
                    info = json.load(fh)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise DataError(f"sidecar {side} is not valid JSON ({exc})") from exc
            if not isinstance(info, dict):
                raise DataError(f"sidecar {side} is not a JSON object")
            meta.update(info_to_row(info))
            if not meta[SOURCE_URL]:
                meta[SOURCE_URL] = uri
        row.update(meta)
        row.setdefault(TRANSCRIPT, "")
        return row

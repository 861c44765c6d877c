"""YouTube (and any yt-dlp site on the allowlist) as a source.

Requests (keyword searches, channels, page URLs, saved info JSON files) fan out into one row
per video with its metadata, before anything is downloaded, so the metadata filter can drop
irrelevant videos for free. `YtdlpDownloadStage` then fetches the survivors (video only, at
most `max_height`, rate-limited, with retries) and their subtitles or automatic captions,
which become the transcript. Offline tests use yt-dlp's own file:// path (`enable_file_urls`).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from urllib.parse import urlparse

import yt_dlp
from yt_dlp.utils import DownloadError, ExtractorError

from medgen_ray.config import YtdlpConfig
from medgen_ray.core.errors import DataError
from medgen_ray.core.stage import Row, RowStage
from medgen_ray.curate.sources import info_to_row
from medgen_ray.schema import (
    CHANNEL,
    DESCRIPTION,
    INFO_JSON,
    LICENSE,
    REQUEST,
    SOURCE_URI,
    SOURCE_URL,
    TITLE,
    TRANSCRIPT,
    VIDEO_ID,
)

YTDLP_ERRORS = (DownloadError, ExtractorError, OSError)


def build_requests(cfg: YtdlpConfig) -> list[dict[str, str]]:
    """One request row per search, channel, page URL or saved info JSON."""
    reqs = [f"ytsearch{cfg.max_results_per_query}:{q}" for q in cfg.queries]
    reqs += [c.rstrip("/") + ("" if c.rstrip("/").endswith("/videos") else "/videos") for c in cfg.channels]
    reqs += list(cfg.urls)
    rows = [{REQUEST: r, INFO_JSON: "", VIDEO_ID: request_id(r)} for r in reqs]
    for pattern in cfg.info_json:
        paths = sorted(Path().glob(pattern)) if not Path(pattern).is_absolute() else sorted(
            Path("/").glob(pattern.lstrip("/")))
        if not paths:
            raise FileNotFoundError(f"curate.source.ytdlp.info_json: nothing matches {pattern!r}")
        rows += [{REQUEST: "", INFO_JSON: str(p), VIDEO_ID: request_id(str(p))} for p in paths]
    return rows


def request_id(request: str) -> str:
    """The id a request row carries until it is listed: a request that cannot be listed still
    ends in the summary, as an errored input under this id."""
    return "request-" + hashlib.sha1(request.encode()).hexdigest()[:12]


def parse_rate(rate: str | None) -> int | None:
    """Bytes per second from yt-dlp rate syntax (4M, 500K), or None."""
    if rate is None:
        return None
    m = re.fullmatch(r"\s*([\d.]+)\s*([KMG]?)\s*", rate, re.IGNORECASE)
    if not m:
        raise ValueError(f"curate.source.ytdlp.rate_limit: {rate!r} is not like 4M or 500K")
    return int(float(m.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[m.group(2).upper()])


def ytdlp_options(cfg: YtdlpConfig, download_dir: str) -> dict:
    """The YoutubeDL options of a download: video only, height cap, rate, retries, captions."""
    h = cfg.max_height
    return {
        # Video only: captions need no audio, and a single stream needs no ffmpeg merge.
        "format": f"bv*[height<={h}][ext=mp4]/bv*[height<={h}]/b[height<={h}]/b",
        "outtmpl": {"default": f"{download_dir}/%(id)s.%(ext)s"},
        "ratelimit": parse_rate(cfg.rate_limit),
        "retries": cfg.retries,
        "fragment_retries": cfg.retries,
        "extractor_retries": cfg.retries,
        "sleep_interval": cfg.sleep_interval_s or None,
        "writesubtitles": True,
        "writeautomaticsub": True,
        "subtitleslangs": ["en", "en.*"],
        "subtitlesformat": "vtt",
        "enable_file_urls": cfg.enable_file_urls,
        "proxy": cfg.proxy,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "ignoreerrors": False,
    }


def domain_allowed(url: str, cfg: YtdlpConfig, domains: list[str] | None = None, key: str = "allowed_domains"
                   ) -> str | None:
    """None if a page URL (or, with `domains`, a media URL) may be fetched, else the reason."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return None if cfg.enable_file_urls else "file:// URLs are disabled (enable_file_urls)"
    allowed = cfg.allowed_domains if domains is None else domains
    host = (parsed.hostname or "").lower()
    for d in allowed:
        d = d.lower()
        if host == d or host.endswith("." + d):
            return None
    return f"domain {host or '?'} not in {key} ({', '.join(allowed)})"


def media_allowed(url: str, cfg: YtdlpConfig) -> str | None:
    """None if a media URL the extractor returned may be downloaded, else the reason. The page
    allowlist decides which sites are read; their media hosts are the extractor's (YouTube's are
    on *.googlevideo.com), unless `allowed_media_domains` narrows them."""
    if urlparse(url).scheme == "file" or cfg.allowed_media_domains is not None:
        return domain_allowed(url, cfg, cfg.allowed_media_domains or [], "allowed_media_domains")
    return None


def parse_vtt(text: str) -> list[tuple[float, float, str]]:
    """WebVTT cues as (start, end, text), with YouTube's rolling duplicates collapsed."""
    cues, last = [], None
    ts = r"(\d+):(\d{2}):(\d{2})\.(\d{3})|(\d{2}):(\d{2})\.(\d{3})"
    blocks = re.split(r"\n\s*\n", text.replace("\r", ""))
    for block in blocks:
        lines = block.strip().splitlines()
        for k, line in enumerate(lines):
            if "-->" in line:
                a, b = [_ts(x.strip().split(" ")[0], ts) for x in line.split("-->")]
                body = " ".join(re.sub(r"<[^>]+>", "", x).strip() for x in lines[k + 1 :]).strip()
                if body and body != last:
                    cues.append((a, b, body))
                    last = body
                break
    return cues


def _ts(s: str, pattern: str) -> float:
    m = re.fullmatch(pattern, s)
    if not m:
        raise ValueError(f"bad WebVTT timestamp {s!r}")
    if m.group(1) is not None:
        h, mi, se, ms = (int(m.group(i)) for i in range(1, 5))
    else:
        h, (mi, se, ms) = 0, (int(m.group(i)) for i in range(5, 8))
    return h * 3600 + mi * 60 + se + ms / 1000


def transcript_text(cues: list[tuple[float, float, str]]) -> str:
    """One `start-end<TAB>text` line per cue: readable, and a later stage can pick lines per clip."""
    return "\n".join(f"{a:.2f}-{b:.2f}\t{t}" for a, b, t in cues)


def _video_rows(info: dict, cfg: YtdlpConfig) -> list[Row]:
    if info.get("_type") in ("playlist", "multi_video") or "entries" in info:
        return [r for e in (info.get("entries") or []) if e for r in _video_rows(e, cfg)]
    row: Row = {VIDEO_ID: str(info.get("id") or ""), SOURCE_URI: "", **info_to_row(info)}
    row[INFO_JSON] = json.dumps(info)
    return [row]


class YtdlpSearchStage(RowStage):
    """Request row -> one row per video with metadata (nothing downloaded yet)."""

    name = "source"
    reads = (REQUEST, INFO_JSON)
    adds = (VIDEO_ID, SOURCE_URI, SOURCE_URL, TITLE, DESCRIPTION, CHANNEL, LICENSE, INFO_JSON)
    drops = (REQUEST,)

    def __init__(self, cfg: YtdlpConfig):
        super().__init__(cfg)

    def process(self, row: Row) -> list[Row]:
        cfg: YtdlpConfig = self.cfg
        try:
            if row[INFO_JSON]:
                with open(row[INFO_JSON]) as fh:
                    infos = [json.load(fh)]
            else:
                opts = {**ytdlp_options(cfg, "."), "extract_flat": "in_playlist"}
                with yt_dlp.YoutubeDL(opts) as ydl:
                    top = ydl.extract_info(row[REQUEST], download=False)
                    flat = _video_rows(top, cfg)
                    infos = []
                    for r in flat:  # flat entries lack descriptions: resolve each video page
                        entry = json.loads(r[INFO_JSON])
                        if entry.get("_type") == "url":
                            entry = ydl.extract_info(entry["url"], download=False)
                        infos.append(entry)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"info JSON {row[INFO_JSON]} is not valid ({exc})") from exc
        except YTDLP_ERRORS as exc:
            raise DataError(f"yt-dlp could not list {row[REQUEST] or row[INFO_JSON]}: {exc}") from exc
        out = []
        for info in infos:
            for video in _video_rows(info, cfg):
                base = {k: v for k, v in row.items() if k not in (REQUEST,)}
                base.update(video)
                if not base[VIDEO_ID]:
                    base[VIDEO_ID] = "unknown"
                    base["error"] = "source: yt-dlp entry has no id"
                    base["reject_stage"] = "source"
                why = domain_allowed(base[SOURCE_URL] or "", cfg)
                if why and not base.get("error"):
                    base["reject_stage"], base["reject_reason"] = "source", f"source: {why}"
                out.append(base)
        if not out:
            raise DataError(f"yt-dlp found no videos for {row[REQUEST] or row[INFO_JSON]}")
        return out


class YtdlpDownloadStage(RowStage):
    """Downloads one video per row (skipped when already on disk) and reads its captions."""

    name = "download"
    reads = (VIDEO_ID, INFO_JSON)
    adds = (SOURCE_URI, TRANSCRIPT)
    drops = (INFO_JSON,)

    def __init__(self, cfg: YtdlpConfig, download_dir: str):
        super().__init__(cfg)
        self.download_dir = download_dir

    def process(self, row: Row) -> Row:
        info = json.loads(row.pop(INFO_JSON))
        for fmt in info.get("formats") or [info]:
            why = media_allowed(fmt.get("url") or "", self.cfg) if fmt.get("url") else None
            if why:
                raise DataError(f"media URL refused: {why}")
        Path(self.download_dir).mkdir(parents=True, exist_ok=True)
        try:
            with yt_dlp.YoutubeDL(ytdlp_options(self.cfg, self.download_dir)) as ydl:
                result = ydl.process_ie_result(info, download=True)
        except YTDLP_ERRORS as exc:
            raise DataError(f"download failed: {exc}") from exc
        files = [d.get("filepath") for d in result.get("requested_downloads") or []]
        path = next((f for f in files if f and Path(f).exists()), None)
        if path is None:
            raise DataError("download produced no file")
        row[SOURCE_URI] = str(path)
        row[TRANSCRIPT] = ""
        for sub in (result.get("requested_subtitles") or {}).values():
            sub_path = sub.get("filepath")
            if sub_path and Path(sub_path).exists():
                row[TRANSCRIPT] = transcript_text(parse_vtt(Path(sub_path).read_text(errors="replace")))
                break
        row.setdefault(SOURCE_URL, info.get("webpage_url", ""))
        return row

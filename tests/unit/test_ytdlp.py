"""The yt-dlp source through yt-dlp itself, on local files (file:// URLs and info JSON files)."""

import json

import pytest

from medgen_ray.config import YtdlpConfig
from medgen_ray.core.batch import from_rows
from medgen_ray.curate.ytdlp import (
    YtdlpDownloadStage,
    YtdlpSearchStage,
    build_requests,
    domain_allowed,
    parse_rate,
    parse_vtt,
)

VTT = """WEBVTT

00:00:00.000 --> 00:00:04.000
Here we enter the <c>abdominal</c> cavity

00:00:04.000 --> 00:00:09.500
and identify the gallbladder
"""


def _info(tmp_path, video, vid="abc123XYZ_0", page="https://m.youtube.com/watch?v=abc123XYZ_0"):
    sub = tmp_path / "sub.en.vtt"
    sub.write_text(VTT)
    info = {
        "id": vid, "title": "Laparoscopic cholecystectomy", "description": "Surgical teaching video",
        "channel": "Surgery Academy", "license": "Creative Commons Attribution license (reuse allowed)",
        "webpage_url": page, "extractor": "youtube", "extractor_key": "Youtube", "duration": 20,
        "formats": [{"format_id": "22", "url": video.as_uri(), "ext": "mp4", "protocol": "file",
                     "vcodec": "avc1.64001f", "acodec": "none", "height": 480, "width": 640}],
        "subtitles": {"en": [{"ext": "vtt", "url": sub.as_uri()}]},
    }
    path = tmp_path / f"{vid}.info.json"
    path.write_text(json.dumps(info))
    return path


def test_info_json_to_download_with_transcript(tmp_path, one_video):
    cfg = YtdlpConfig(info_json=[str(_info(tmp_path, one_video))], enable_file_urls=True)
    rows = build_requests(cfg)
    listed = YtdlpSearchStage(cfg)(from_rows(rows))
    assert listed["video_id"][0] == "abc123XYZ_0" and listed["title"][0] == "Laparoscopic cholecystectomy"
    assert listed["reject_reason"][0] == ""
    out = YtdlpDownloadStage(cfg, str(tmp_path / "dl"))(listed)
    assert out["error"][0] == "", out["error"][0]
    path = out["source_uri"][0]
    assert path.endswith("abc123XYZ_0.mp4") and open(path, "rb").read() == one_video.read_bytes()
    assert out["transcript"][0].splitlines() == ["0.00-4.00\tHere we enter the abdominal cavity",
                                                 "4.00-9.50\tand identify the gallbladder"]


def test_file_url_refused_unless_enabled(tmp_path, one_video):
    cfg = YtdlpConfig(info_json=[str(_info(tmp_path, one_video))], enable_file_urls=False)
    listed = YtdlpSearchStage(cfg)(from_rows(build_requests(cfg)))
    out = YtdlpDownloadStage(cfg, str(tmp_path / "dl"))(listed)
    assert "file:// URLs are disabled" in out["error"][0]
    assert not (tmp_path / "dl" / "abc123XYZ_0.mp4").exists()


def test_domain_allowlist(tmp_path, one_video):
    cfg = YtdlpConfig(info_json=[str(_info(tmp_path, one_video, page="https://videos.example.org/v/1"))],
                      enable_file_urls=True)
    listed = YtdlpSearchStage(cfg)(from_rows(build_requests(cfg)))
    assert "domain videos.example.org not in allowed_domains" in listed["reject_reason"][0]
    assert domain_allowed("https://m.youtube.com/watch?v=x", cfg) is None
    assert domain_allowed("https://notyoutube.com/x", cfg) is not None


def test_direct_file_url_through_the_generic_extractor(tmp_path, one_video):
    cfg = YtdlpConfig(urls=[one_video.as_uri()], enable_file_urls=True, allowed_domains=[])
    listed = YtdlpSearchStage(cfg)(from_rows(build_requests(cfg)))
    assert listed["video_id"][0] == "endo_game" and listed["reject_reason"][0] == ""
    out = YtdlpDownloadStage(cfg, str(tmp_path / "dl"))(listed)
    assert out["error"][0] == "" and out["source_uri"][0].endswith("endo_game.mp4")


def test_unreachable_request_is_a_row_error(tmp_path):
    cfg = YtdlpConfig(urls=[(tmp_path / "missing.mp4").as_uri()], enable_file_urls=True)
    out = YtdlpSearchStage(cfg)(from_rows(build_requests(cfg)))
    assert out["error"][0].startswith("source: yt-dlp could not list")


def test_requests_and_options():
    cfg = YtdlpConfig(queries=["knee arthroscopy"], channels=["https://m.youtube.com/@SurgeryAcademy"],
                      max_results_per_query=7)
    reqs = [r["request"] for r in build_requests(cfg)]
    assert reqs == ["ytsearch7:knee arthroscopy", "https://m.youtube.com/@SurgeryAcademy/videos"]
    assert parse_rate("4M") == 4 * 2**20 and parse_rate(None) is None
    with pytest.raises(ValueError, match="rate_limit"):
        parse_rate("fast")
    assert parse_vtt("WEBVTT\n\n01:02.500 --> 01:03.000\nhi\n") == [(62.5, 63.0, "hi")]

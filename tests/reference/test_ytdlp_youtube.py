"""The yt-dlp source on YouTube-shaped data, through yt-dlp's own `process_ie_result`: the
page is on www.youtube.com, the media on a googlevideo.com CDN host, captions automatic only.
Everything is served by a proxy on 127.0.0.1 (yt-dlp's `proxy` option)."""

import json

from medgen_ray.config import YtdlpConfig
from medgen_ray.core.batch import from_rows
from medgen_ray.curate.ytdlp import YtdlpDownloadStage, YtdlpSearchStage, build_requests
from tests.fake_youtube import FakeYouTube, youtube_info
from tests.unit.test_ytdlp import VTT


def _listed(tmp_path, one_video, **cfg_kwargs):
    info = youtube_info("dQw4w9WgXcQ", 20.0, one_video.stat().st_size)
    path = tmp_path / "dQw4w9WgXcQ.info.json"
    path.write_text(json.dumps(info))
    cfg = YtdlpConfig(info_json=[str(path)], **cfg_kwargs)  # default allowlist: youtube.com, youtu.be
    return cfg, YtdlpSearchStage(cfg)(from_rows(build_requests(cfg)))


def test_youtube_media_on_the_cdn_host_downloads(tmp_path, one_video):
    with FakeYouTube(one_video, VTT) as yt:
        cfg, listed = _listed(tmp_path, one_video, proxy=yt.proxy)
        assert listed["reject_reason"][0] == "" and listed["video_id"][0] == "dQw4w9WgXcQ"
        out = YtdlpDownloadStage(cfg, str(tmp_path / "dl"))(listed)
    assert out["error"][0] == "", out["error"][0]
    assert open(out["source_uri"][0], "rb").read() == one_video.read_bytes()
    assert any(h.endswith(".googlevideo.com") for h in yt.hosts) and "www.youtube.com" in yt.hosts
    assert "gallbladder" in out["transcript"][0]  # from the automatic captions


def test_media_allowlist_narrows_the_cdn_hosts_when_set(tmp_path, one_video):
    with FakeYouTube(one_video, VTT) as yt:
        cfg, listed = _listed(tmp_path, one_video, proxy=yt.proxy, allowed_media_domains=["example-cdn.net"])
        out = YtdlpDownloadStage(cfg, str(tmp_path / "dl"))(listed)
    assert "media URL refused: domain rr4---sn-4g5e6nzz.googlevideo.com not in allowed_media_domains" \
        in out["error"][0]
    assert not any(h.endswith(".googlevideo.com") for h in yt.hosts)

"""A stand-in for YouTube's hosts, reached the way a client behind a proxy reaches them: an
HTTP proxy on 127.0.0.1 that answers absolute-URI requests for `*.googlevideo.com`
(`/videoplayback`, with byte ranges) and `www.youtube.com/api/timedtext` (WebVTT), and
records every host asked for. yt-dlp is pointed at it with its own `proxy` option, so nothing
leaves the machine and no name is resolved."""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse


class FakeYouTube:
    """Start with `with FakeYouTube(video, vtt) as yt:`; `yt.proxy` is the proxy URL, `yt.hosts` what was asked."""

    def __init__(self, video: Path, vtt: str):
        self.video = Path(video).read_bytes()
        self.vtt = vtt.encode()
        self.hosts: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802 (http.server's name)
                url = urlparse(self.path)
                fake.hosts.append(url.hostname or "")
                if (url.hostname or "").endswith(".googlevideo.com") and url.path == "/videoplayback":
                    return self._send(fake.video, "video/mp4")
                if url.hostname == "www.youtube.com" and url.path == "/api/timedtext":
                    return self._send(fake.vtt, "text/vtt")
                self.send_error(404)

            def _send(self, data: bytes, ctype: str):
                start, end = 0, len(data) - 1
                m = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
                if m:
                    start = int(m.group(1))
                    end = min(int(m.group(2)) if m.group(2) else end, len(data) - 1)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(end - start + 1))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                self.wfile.write(data[start:end + 1])

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.proxy = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeYouTube:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def youtube_info(video_id: str, duration: float, size: int) -> dict:
    """An info dict shaped like yt-dlp's YouTube extractor output (`--dump-json`): the page on
    www.youtube.com, every format on a googlevideo.com CDN host (plain http here, so the local
    proxy can answer), automatic captions only, requested_formats from the original run."""
    cdn = "http://rr4---sn-4g5e6nzz.googlevideo.com/videoplayback"
    common = f"expire=1767225600&ei=abc&ip=203.0.113.7&id=o-AB{video_id}&source=youtube&requiressl=yes"

    def fmt(itag, ext, height, vcodec, acodec, tbr, note):
        f = {"format_id": str(itag), "format_note": note, "ext": ext, "protocol": "http",
             "url": f"{cdn}?{common}&itag={itag}&mime=video%2F{ext}&dur={duration:.3f}",
             "vcodec": vcodec, "acodec": acodec, "tbr": tbr, "filesize": size, "container": f"{ext}_dash",
             "http_headers": {"User-Agent": "Mozilla/5.0", "Accept-Language": "en-us,en;q=0.5"},
             "downloader_options": {"http_chunk_size": 10485760}}
        if height:
            f.update(height=height, width=height * 4 // 3, fps=25, dynamic_range="SDR", aspect_ratio=1.33,
                     resolution=f"{height * 4 // 3}x{height}")
        else:
            f.update(resolution="audio only", audio_ext=ext, video_ext="none", asr=44100, audio_channels=2)
        return f

    formats = [fmt(139, "m4a", None, "none", "mp4a.40.5", 48.8, "low"),
               fmt(140, "m4a", None, "none", "mp4a.40.2", 129.5, "medium"),
               fmt(134, "mp4", 360, "avc1.4D401E", "none", 380.1, "360p"),
               fmt(135, "mp4", 480, "avc1.4D401E", "none", 640.2, "480p"),
               fmt(244, "webm", 480, "vp9", "none", 500.7, "480p")]
    timedtext = f"http://www.youtube.com/api/timedtext?v={video_id}&ei=abc&caps=asr&kind=asr&lang=en"
    return {
        "id": video_id, "title": "Laparoscopic cholecystectomy - step by step",
        "description": "Surgical teaching video: Calot's triangle, clipping, dissection.",
        "channel": "Surgery Academy", "channel_id": "UCabcdefghijklmnopqrstuv", "uploader": "Surgery Academy",
        "uploader_id": "@SurgeryAcademy", "upload_date": "20240315", "duration": duration, "view_count": 12345,
        "license": "Creative Commons Attribution license (reuse allowed)", "age_limit": 0, "is_live": False,
        "was_live": False, "live_status": "not_live", "availability": "public", "categories": ["Education"],
        "tags": ["surgery", "laparoscopy"], "thumbnail": f"https://i.ytimg.com/vi/{video_id}/maxresdefault.jpg",
        "webpage_url": f"https://www.youtube.com/watch?v={video_id}",
        "original_url": f"https://www.youtube.com/watch?v={video_id}", "webpage_url_basename": "watch",
        "webpage_url_domain": "youtube.com", "extractor": "youtube", "extractor_key": "Youtube",
        "display_id": video_id, "fulltitle": "Laparoscopic cholecystectomy - step by step",
        "formats": formats, "subtitles": {},
        "automatic_captions": {"en": [{"ext": "json3", "url": timedtext + "&fmt=json3", "name": "English"},
                                      {"ext": "vtt", "url": timedtext + "&fmt=vtt", "name": "English"}]},
        "requested_formats": [formats[3], formats[1]], "format_id": "135+140", "ext": "mp4",
        "epoch": 1767139200, "_type": "video", "_version": {"version": "2025.12.08"},
    }

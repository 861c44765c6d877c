"""A local OpenAI-compatible chat server with scripted faults, for caption tests (127.0.0.1 only)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GOOD = {
    "detailed_caption": " ".join(["The clip shows a laparoscopic view of the abdominal cavity with a grey grasper "
                                  "retracting pink tissue while the camera pans slowly across the field."] * 3),
    "brief_caption": "Laparoscopic instruments retract tissue in the abdomen.",
    "category": "clinical practice",
}


class FakeOpenAI:
    """Actions per request, in order (then `default`): good, 429, 500, timeout, malformed, refuse, slow, text:<s>."""

    def __init__(self, script: list[str] | None = None, default: str = "good", hang_s: float = 2.0):
        self.script = list(script or [])
        self.default = default
        self.hang_s = hang_s
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with owner.lock:
                    owner.requests.append(body)
                    owner.headers.append(dict(self.headers))
                    action = owner.script.pop(0) if owner.script else owner.default
                if action == "429":
                    return self._send(429, {"error": {"message": "rate limited", "type": "rate_limit"}},
                                      {"Retry-After": "0"})
                if action == "500":
                    return self._send(500, {"error": {"message": "boom", "type": "server_error"}})
                if action == "timeout":
                    time.sleep(owner.hang_s)
                    return self._send(200, owner.completion(json.dumps(GOOD)))
                if action == "slow":
                    time.sleep(0.3)
                    return self._send(200, owner.completion(json.dumps(GOOD)))
                if action == "malformed":
                    return self._send(200, owner.completion('{"detailed_caption": "cut off'))
                if action == "refuse":
                    return self._send(200, owner.completion(None, refusal="I can't help with that."))
                if action.startswith("text:"):
                    return self._send(200, owner.completion(action[5:]))
                return self._send(200, owner.completion(json.dumps(GOOD)))

            def _send(self, code, payload, extra=None):
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def completion(content, refusal=None) -> dict:
        return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "gpt-4o",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content, "refusal": refusal}}],
                "usage": {"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200}}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

"""Headless Chromium driven over the DevTools protocol (websockets), for page tests."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--autoplay-policy=no-user-gesture-required"]


# Every host but this machine unreachable: pages that load analytics or fonts from the internet
# (Label Studio's) send nothing out.
LOCAL_ONLY = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"


class Browser:
    def __init__(self, profile: Path, extra_flags: tuple[str, ...] = ()):
        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        assert exe, "chromium not found: scripts/install.sh installs it (apt-get, as root)"
        profile.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([exe, *FLAGS, *extra_flags, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                                      "--remote-debugging-address=127.0.0.1", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.1)
        self.port = int(port_file.read_text().split()[0])

    def _page_ws(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json") as r:
            pages = [t for t in json.loads(r.read()) if t["type"] == "page"]
        return pages[0]["webSocketDebuggerUrl"]

    def run(self, url: str, expression: str, until: str, timeout_s: float = 120.0) -> dict:
        """Open url, wait until the JS expression `until` is truthy (at most timeout_s), return
        `expression`'s value."""
        return asyncio.run(self._run(url, expression, until, timeout_s))

    async def _run(self, url: str, expression: str, until: str, timeout_s: float) -> dict:
        return await self._steps([(url, None, until)], expression, None, timeout_s, strict=False)

    def steps(self, steps: list[tuple[str | None, str | None, str]], expression: str,
              screenshot: Path | None = None, timeout_s: float = 120.0):
        """Steps of (url to open or None, JS to run or None, JS to wait for), then `expression`'s
        value; with `screenshot`, a PNG of the page at the end."""
        return asyncio.run(self._steps(steps, expression, screenshot, timeout_s))

    async def _steps(self, steps, expression, screenshot, timeout_s, strict: bool = True):
        import base64

        import websockets

        async with websockets.connect(self._page_ws(), max_size=2**26) as ws:
            counter = iter(range(1, 10**9))

            async def call(method: str, **params):
                msg_id = next(counter)
                await ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
                while True:
                    msg = json.loads(await ws.recv())
                    if msg.get("id") == msg_id:
                        return msg.get("result", {})

            async def evaluate(expr: str):
                res = await call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
                return res.get("result", {}).get("value")

            await call("Page.enable")
            if screenshot is not None:
                await call("Emulation.setDeviceMetricsOverride", width=1400, height=900, deviceScaleFactor=1,
                           mobile=False)
            for url, action, until in steps:
                if url:
                    await call("Page.navigate", url=url)
                if action:
                    await evaluate(action)
                deadline = time.monotonic() + timeout_s
                while not await evaluate(f"!!({until})"):
                    if time.monotonic() > deadline:
                        if not strict:  # run(): the caller judges the page as it is
                            break
                        raise TimeoutError(f"page never met {until!r} (at {await evaluate('location.href')})")
                    await asyncio.sleep(0.3)
            value = await evaluate(expression)
            if screenshot is not None:
                shot = await call("Page.captureScreenshot", format="png")
                screenshot.write_bytes(base64.b64decode(shot["data"]))
            return value

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

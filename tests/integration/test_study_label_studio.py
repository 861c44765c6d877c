"""The doctors' study through a real Label Studio (1.23.2, its own virtual environment
.venv-labelstudio from scripts/install.sh) started here on 127.0.0.1: per rater a project for each
task kind with the study's labeling configs and import files, three raters' answers with
agreement worked out by hand (tests/study_data.py) posted through the API, Label Studio's JSON
export read back by `study results`; then headless Chromium logs in and opens a pair task's
labeling page, where both videos must load from Label Studio's local-files storage.

Label Studio is kept off the internet: its version check, Sentry and analytics are switched off,
and Chromium resolves no host but this machine.
"""

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from medgen_ray.evaluate.study import ASPECTS, create_study, read_study
from medgen_ray.evaluate.study_results import study_results
from tests import study_data as sd
from tests.integration.test_serve import _free_port

ROOT = Path(__file__).resolve().parents[2]
LS = Path(os.environ.get("MEDGEN_LABEL_STUDIO_VENV", ROOT / ".venv-labelstudio")) / "bin" / "label-studio"
TOKEN = "5f0c2a9e8b7d6c5f4e3d2c1b0a9f8e7d6c5b4a39"
USER, PASSWORD = "study@example.com", "study-pass-1"
SCREENSHOT = os.environ.get("MEDGEN_STUDY_SCREENSHOT")  # where to keep the labeling page's picture


def _api(base: str, method: str, path: str, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{base}{path}", data=data, method=method,
                                 headers={"Authorization": f"Token {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        text = r.read()
    return json.loads(text) if text else None


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    if not LS.exists():
        pytest.fail(f"{LS} missing: scripts/install.sh installs Label Studio in its own environment")
    root = tmp_path_factory.mktemp("label_studio")
    port = _free_port()
    env = {**os.environ, "LABEL_STUDIO_BASE_DATA_DIR": str(root / "data"), "LOCAL_FILES_SERVING_ENABLED": "true",
           "LOCAL_FILES_DOCUMENT_ROOT": str(root), "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
           "LATEST_VERSION_CHECK": "false", "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "", "COLLECT_ANALYTICS": "false",
           "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true"}
    env.pop("HOST", None)
    proc = subprocess.Popen([str(LS), "start", "--no-browser", "--host", "127.0.0.1", "--internal-host", "127.0.0.1",
                             "--port", str(port), "--username", USER, "--password", PASSWORD, "--user-token", TOKEN],
                            env=env, cwd=root, stdout=open(root / "server.log", "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("Label Studio did not start:\n" + (root / "server.log").read_text()[-3000:])
            time.sleep(1)
        yield {"base": base, "root": root}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


# Label Studio plays a Video tag off-screen and draws its frames on a canvas: both canvases must
# show non-black pixels (the frames are on screen, not a loading spinner).
DRAWN = ("Array.from(document.querySelectorAll('canvas')).filter(c => { const x = c.getContext('2d');"
         " if (!x || !c.width) return false; const d = x.getImageData(0, 0, c.width, c.height).data;"
         " for (let i = 0; i < d.length; i += 4 * 97) if (d[i + 3] && d[i] + d[i + 1] + d[i + 2] > 30) return true;"
         " return false; }).length >= 2")


def _choices(name: str, to: str, choice: str) -> dict:
    return {"from_name": name, "to_name": to, "type": "choices", "value": {"choices": [choice]}}


def test_study_round_trip_through_label_studio(label_studio, tmp_path):
    base, root = label_studio["base"], label_studio["root"]
    evaluation = sd.make_evaluation(root / "eval")
    folder = root / "study"
    create_study(evaluation, str(folder), "MedGen", sd.RATERS, seed=5, media="local-files", document_root=str(root))
    study, key = read_study(str(folder))
    answers = {(r, t, a): c for r, t, a, c in sd.answers(key)}
    configs = {k: (folder / "label_studio" / f"{k}.xml").read_text() for k in ("pairs", "distortion")}
    exports, first_pair = [], None
    for rater in sd.RATERS:
        for kind in ("pairs", "distortion"):
            project = _api(base, "POST", "/api/projects", {"title": f"study {study['study_id']} {kind} {rater}",
                                                           "label_config": configs[kind]})
            tasks = json.loads((folder / "label_studio" / f"{rater}.{kind}.json").read_text())
            # Label Studio serves /data/local-files/ only under a project's local-files storage
            _api(base, "POST", "/api/storages/localfiles", {"project": project["id"], "path": str(folder / "media"),
                                                            "use_blob_urls": True, "title": "study media"})
            _api(base, "POST", f"/api/projects/{project['id']}/import", tasks)
            listed = _api(base, "GET", f"/api/tasks?project={project['id']}&page_size=1000")["tasks"]
            assert len(listed) == len(tasks)
            for t in listed:
                tid = t["data"]["task_id"]
                if kind == "pairs":
                    first_pair = first_pair or (project["id"], t["id"])
                    result = [_choices(a, "video_left", answers[(rater, tid, a)]) for a in ASPECTS]
                else:
                    result = [_choices("distortion", "video", answers[(rater, tid, "distortion")])]
                _api(base, "POST", f"/api/tasks/{t['id']}/annotations", {"result": result, "was_cancelled": False})
            export = tmp_path / f"{rater}.{kind}.json"
            export.write_text(json.dumps(_api(base, "GET", f"/api/projects/{project['id']}/export?exportType=JSON")))
            exports.append(str(export))

    result = study_results(str(folder), exports)
    kappa = {(k["task"], k["raters"]): k["kappa"] for k in result["kappa"]}
    for name, value in sd.KAPPA.items():
        assert kappa[name] == pytest.approx(value, abs=1e-12), name
    got = {(r["other"], r["aspect"]): {v: r[v] for v in ("win", "both_lose", "loss", "split")} for r in result["fig6"]}
    assert got == sd.expected_fig6(key)
    assert result["warping_error"] == sd.WARPING and result["gaps"] == []

    from tests.browser import LOCAL_ONLY, Browser

    browser = Browser(tmp_path / "chromium", extra_flags=(LOCAL_ONLY,))
    shot = tmp_path / "labeling.png"
    try:
        project, task = first_pair
        login = (f"document.querySelector('input[name=email]').value = {json.dumps(USER)};"
                 f"document.querySelector('input[name=password]').value = {json.dumps(PASSWORD)};"
                 "document.querySelector('form').submit();")
        videos = ("Array.from(document.querySelectorAll('video')).map(v => ({ready: v.readyState, "
                  "width: v.videoWidth, src: v.currentSrc}))")
        state = browser.steps(
            [(f"{base}/user/login/", None, "document.querySelector('input[name=password]')"),
             (None, login, "!location.pathname.startsWith('/user/login')"),
             (f"{base}/projects/{project}/data?task={task}", None,
              "document.querySelectorAll('video').length >= 2 && "
              "Array.from(document.querySelectorAll('video')).every(v => v.readyState >= 2)"),
             (None, None, DRAWN)],
            videos, screenshot=shot)
    finally:
        browser.close()
    assert len(state) == 2 and all(v["ready"] >= 2 and v["width"] == 64 for v in state), state
    assert all("/data/local-files/?d=study/media/" in v["src"] for v in state), state
    if SCREENSHOT:
        shutil.copy(shot, SCREENSHOT)

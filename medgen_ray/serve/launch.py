"""`medgen serve`: the application on the cluster's (or an embedded) Ray, HTTP on serve.host:port."""

from __future__ import annotations

import signal
import threading

from medgen_ray.config import AppConfig

APP_NAME = "medgen"


def start_serve(app: AppConfig) -> str:
    """Deploy the application; returns its base URL. Idempotent within one Ray session."""
    from ray import serve

    from medgen_ray.core.cluster import init_ray
    from medgen_ray.models.registry import get_spec
    from medgen_ray.serve.app import build_app, resolve_token

    cfg = app.serve
    get_spec(cfg.model, "video")
    resolve_token(cfg)
    init_ray(app.ray)
    serve.start(http_options={"host": cfg.host, "port": cfg.port})
    serve.run(build_app(cfg), name=APP_NAME, route_prefix="/", blocking=False)
    return f"http://{cfg.host}:{cfg.port}"


def run_serve(app: AppConfig) -> None:
    """Deploy the service and block until SIGINT/SIGTERM, then shut Serve down."""
    from ray import serve

    url = start_serve(app)
    print(f"medgen serve: {url}/ (API docs {url}/docs); Ctrl-C stops", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    serve.shutdown()

"""`medgen serve`: the application on the cluster's (or an embedded) Ray, HTTP on serve.host:port."""

from __future__ import annotations

import signal
import threading

from medgen_ray.config import AppConfig, ConfigError

APP_NAME = "medgen"


def start_serve(app: AppConfig) -> str:
    """Deploy the application; returns the base URL where the proxy really listens (a Serve
    already running keeps its own host and port). Idempotent within one Ray session."""
    from medgen_ray.core.cluster import init_ray  # sets the loopback-only switch before Ray is imported here
    from medgen_ray.models.registry import get_spec
    from medgen_ray.models.requirements import require_weights

    cfg = app.serve
    get_spec(cfg.model, "video")
    require_weights(app, "serve")
    from medgen_ray.serve.app import build_app, resolve_token

    resolve_token(cfg)  # the configured bind first: nothing starts when it needs a token and has none
    if cfg.cache.mag_ratios:  # a missing or foreign ratio file fails here, not in a replica
        from medgen_ray.models.families import family_of
        from medgen_ray.models.video import load_mag_ratios

        load_mag_ratios(cfg.cache.mag_ratios, family_of(cfg.model).name)
    init_ray(app.ray)
    import ray
    from ray import serve

    from medgen_ray.models.parallel import placement_problems

    g = cfg.generator
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    problems = placement_problems(g.parallel.ranks, g.num_gpus, g.num_cpus, nodes, where="serve.generator.parallel")
    if problems:  # a placement group that cannot be placed would leave the replica pending for ever
        raise ConfigError(problems)

    serve.start(http_options={"host": cfg.host, "port": cfg.port})
    from medgen_ray.core.ray_compat import serve_client

    bound = serve_client().http_config
    if (bound.host, bound.port) != (cfg.host, cfg.port):
        print(f"medgen serve: Serve was already running; its HTTP proxy keeps {bound.host}:{bound.port} "
              f"(serve.host/port {cfg.host}:{cfg.port} do not apply)", flush=True)
    serve.run(build_app(cfg, bound.host), name=APP_NAME, route_prefix="/", blocking=False)
    host = "127.0.0.1" if bound.host in ("0.0.0.0", "::") else bound.host
    return f"http://[{host}]:{bound.port}" if ":" in host else f"http://{host}:{bound.port}"


def run_serve(app: AppConfig) -> None:
    """Deploy the service and block until SIGINT/SIGTERM, then shut Serve down."""
    url = start_serve(app)
    from ray import serve

    print(f"medgen serve: {url}/ (API docs {url}/docs); Ctrl-C stops", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    serve.shutdown()

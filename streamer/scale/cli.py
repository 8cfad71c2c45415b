"""Command-line parts of the Ray scale-out: ``run --ray`` options and ``camstream serve``.

Imported by ``streamer.cli`` for every command, so it imports neither Ray nor
prometheus-client: those load only when ``--ray`` or ``serve`` actually runs.
"""

from __future__ import annotations

import argparse


def add_batch_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cluster (Ray; needs the [ray] extra: pip install '.[ray]' in a clone)")
    g.add_argument("--ray", nargs="?", const="auto", metavar="auto|ADDRESS",
                   help="run every INPUT as one unit of work on a Ray cluster, outputs in the folder -o OUTDIR "
                        "('auto': the cluster running on this machine, else a new local one; or ray://HOST:10001, HOST:6379)")
    g.add_argument("--skip-existing", action=argparse.BooleanOptionalAction, default=None,
                   help="with --ray: skip inputs whose output exists and whose report says ok (default on)")
    g.add_argument("--ray-workers", type=int, metavar="N", help="with --ray: workers (default: one per free CPU, or per GPU for diffusion)")
    g.add_argument("--retries", type=int, default=2, metavar="N", help="with --ray: re-runs of a file whose worker died or crashed (default 2)")


def register(sub: argparse._SubParsersAction) -> None:
    """``camstream serve CAMERAS.yaml``."""
    p = sub.add_parser(
        "serve",
        help="run every camera of a YAML file as a supervised Ray actor, with Prometheus metrics",
        description="Anonymize a fleet of cameras: one supervised Ray actor per camera (restarted with backoff when it dies), "
                    "cameras that are down retried for ever, outputs to RTSP or to a folder of segments. "
                    "Metrics on http://HOST:PORT/metrics, health on /healthz.",
    )
    p.add_argument("cameras", help="YAML file: cameras: [{name, input, output, method, set: {...}}, ...]")
    p.add_argument("--address", help="join this Ray cluster (default: start a local one)")
    p.add_argument("--metrics-port", type=int, default=9108, help="port of /metrics and /healthz (default 9108; 0: any free port)")
    p.add_argument("--metrics-host", default="127.0.0.1", help="address the metrics server listens on (default 127.0.0.1)")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long (default: until Ctrl-C/SIGTERM)")
    p.add_argument("-c", "--config", action="append", default=[], metavar="FILE", help="YAML config or preset, for every camera")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override one config value, every camera")
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    from .serve import cmd_serve

    return cmd_serve(args)

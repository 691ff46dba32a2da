"""The `turnout` command: serve, validate a config, route one conversation, evaluate routers."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from turnout import __version__
from turnout.config import Config, ConfigError, load_config
from turnout.routing.conversation import RoutingRequest, Turn
from turnout.server import runner
from turnout.server.runner import StartupError

if TYPE_CHECKING:
    from turnout.routing.decision import Decision
    from turnout.routing.example_cache import CacheFile

logger = logging.getLogger("turnout")


def _fail(message: str, code: int = 2) -> int:
    print(f"turnout: {message}", file=sys.stderr)
    return code


def _load(path: str) -> Config:
    config = load_config(path)
    for warning in config.warnings:
        logger.warning("%s", warning)
    return config


class _StopRequested(Exception):
    """SIGTERM arrived before the server was up (while the model loads, say)."""


def _stop_requested(signum: int, frame: object) -> None:
    raise _StopRequested


def cmd_up(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    signal.signal(signal.SIGTERM, _stop_requested)
    config = _load(args.config)
    port = args.port or config.model_port
    try:
        listener = runner.bind(args.host, port)
    except OSError as exc:
        return _fail(f"cannot listen on {args.host}:{port}: {exc.strerror or exc}")
    logger.info("turnout %s: config %s", __version__, args.config)
    try:
        if args.workers > 1:
            runner.serve_workers(args.config, listener, args.workers, args.shutdown_grace)
        else:
            runner.serve(config, listener, args.shutdown_grace, started)
    except _StopRequested:
        logger.info("stopped before serving")
        return 0
    logger.info("stopped")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    for warning in config.warnings:
        print(f"warning: {warning}")
    print(
        f"{args.config}: ok ({len(config.model_providers)} model providers, "
        f"{len(config.routing_preferences)} routes)"
    )
    return 0


def _request_turns(args: argparse.Namespace) -> tuple[Turn, ...]:
    if args.messages:
        from turnout.apis import API_FORMATS

        try:
            body = json.loads(Path(args.messages).read_text("utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{args.messages}: {exc}") from exc
        if isinstance(body, list):
            body = {"messages": body}
        return API_FORMATS["openai_chat"].parse_routing_request(body).turns
    return (Turn("user", args.text),)


def cmd_route(args: argparse.Namespace) -> int:
    from turnout.apis.errors import RequestError

    if bool(args.text) == bool(args.messages):
        return _fail("give the text to route or --messages FILE, not both")
    config = _load(args.config)
    try:
        turns = _request_turns(args)
    except (ValueError, RequestError) as exc:
        return _fail(str(exc))
    decision = asyncio.run(_decide_once(config, RoutingRequest(model=None, turns=turns)))
    print(f"route:  {decision.route or '(none)'}")
    print(f"models: {', '.join(decision.models)}")
    print(f"router: {decision.router}" + _fallback_note(decision))
    if decision.confidence is not None:
        print(f"confidence: {decision.confidence:.2f}")
    print(f"reason: {decision.reason}")
    for name, score in sorted(decision.scores.items(), key=lambda item: -item[1]):
        print(f"  {score:7.4f}  {name}")
    return 0


async def _decide_once(config: Config, request: RoutingRequest) -> Decision:
    from turnout.providers.upstream import UpstreamPool

    pool = UpstreamPool()
    try:
        return await runner.routing_service(config, pool).decide(request)
    finally:
        await pool.aclose()


def cmd_eval(args: argparse.Namespace) -> int:
    from turnout.routing import evaluation, report
    from turnout.routing.baseline import DescriptionCosineRouter
    from turnout.routing.embedded import EmbeddedRouter
    from turnout.routing.embedder import Embedder

    try:
        suites = [
            evaluation.load_suite(Path(d), Path(args.config) if args.config else None)
            for d in args.suites
        ]
    except evaluation.SuiteError as exc:
        return _fail(str(exc))
    embedder = Embedder(args.threads)
    routers: list[evaluation.Classifier] = [EmbeddedRouter(embedder)]
    if not args.no_baseline:
        routers.append(DescriptionCosineRouter(embedder))
    results = report.run(routers, suites, show_progress=not args.json)
    if args.json:
        print(json.dumps(_finite(results), indent=2, allow_nan=False))
    else:
        from rich.console import Console

        console = Console()
        if not console.is_terminal and "COLUMNS" not in os.environ:
            console = Console(width=200)  # piped or redirected: whole router names, not 80 columns
        report.print_results(results, console)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from turnout.observability.stats import run_stats

    return run_stats(args.url, args.interval, args.once)


def cmd_routes_bootstrap(args: argparse.Namespace) -> int:
    from turnout.routing import bootstrap
    from turnout.routing.example_cache import CacheError

    config = _load(args.config)
    settings = config.routing.bootstrap
    model = args.model or (settings.model if settings else None)
    if model is None:
        return _fail("no model to write the examples: give --model or set routing.bootstrap.model")
    out = args.out or (settings.cache_path if settings else None)
    if out is None:
        return _fail("no file to write: give --out FILE or set routing.bootstrap.cache_path")
    if not config.routing_preferences:
        return _fail(f"{args.config} has no routing_preferences to write examples for")
    try:
        model_id = bootstrap.resolve_model(config, model)
    except bootstrap.BootstrapError as exc:
        return _fail(f"--model: {exc}" if args.model else f"routing.bootstrap.model: {exc}")
    per_route = args.per_route or (settings.per_route if settings else bootstrap.DEFAULT_PER_ROUTE)
    no_route = bootstrap.DEFAULT_NO_ROUTE if settings is None else settings.no_route
    if args.no_route is not None:
        no_route = args.no_route
    configured = settings.model if settings else None
    if configured is not None and config.resolve_model(configured) != model_id:
        print(
            f"note: routing.bootstrap.model is {configured}: `turnout up` writes its own examples"
        )
    print(f"asking {model_id} for {per_route} requests per route and {no_route} without one ...")
    try:
        cache = asyncio.run(_bootstrap(config, Path(out), model_id, per_route, no_route))
    except (bootstrap.BootstrapError, CacheError, OSError) as exc:
        return _fail(str(exc), code=1)
    print(f"wrote {out} ({len(cache.bootstrapped)} examples by {model_id}):")
    width = max(len(name) for name in [*cache.bootstrapped.routes, "(no route)"])
    for name, texts in cache.bootstrapped.routes.items():
        print(f"  {name:<{width}}  {len(texts)}")
    print(f"  {'(no route)':<{width}}  {len(cache.bootstrapped.no_route)}")
    return 0


async def _bootstrap(
    config: Config, out: Path, model_id: str, per_route: int, no_route: int
) -> CacheFile:
    from turnout.providers.upstream import UpstreamPool
    from turnout.routing.example_upkeep import bootstrap_cache

    pool = UpstreamPool()
    try:
        return await bootstrap_cache(config, pool, out, model_id, per_route, no_route)
    finally:
        await pool.aclose()


def cmd_routes_show(args: argparse.Namespace) -> int:
    from turnout.routing.example_cache import CacheError, CacheFile, read_cache
    from turnout.routing.example_upkeep import cache_path, current_key

    config = _load(args.config)
    path = Path(args.cache) if args.cache else cache_path(config)
    try:
        cache = read_cache(path) if path is not None else CacheFile()
    except CacheError as exc:
        return _fail(str(exc), code=1)
    fresh = cache.key is not None and cache.key == current_key(config, cache)
    if path is None:
        print("cache: none (set routing.bootstrap.cache_path or give --cache FILE)")
    elif cache.key is None:
        print(f"cache: {path} (no written examples)")
    else:
        state = "current" if fresh else "STALE: written for other routes or another model"
        print(f"cache: {path}, written by {cache.model or 'an unknown model'} ({state})")
    written = f"written by {cache.model or 'an LLM'}" + ("" if fresh else ", STALE: not used")
    for route in config.routing_preferences:
        print(f"\n{route.name}: {route.description}")
        print(f"  models: {', '.join(route.models)}")
        _show_texts("config examples", route.examples)
        _show_texts(written, cache.bootstrapped.routes.get(route.name, ()))
        _show_texts("feedback", cache.feedback.routes.get(route.name, ()))
    print("\n(no route): requests that must get no route")
    _show_texts("config examples", config.routing.no_route_examples)
    _show_texts(written, cache.bootstrapped.no_route)
    _show_texts("feedback", cache.feedback.no_route)
    known = {route.name for route in config.routing_preferences}
    for source, examples in (("written", cache.bootstrapped), ("feedback", cache.feedback)):
        for name, texts in examples.routes.items():
            if name not in known and texts:
                print(
                    f"\n{name}: not a configured route; its {len(texts)} {source} examples are unused"
                )
    return 0


def _show_texts(label: str, texts: Sequence[str]) -> None:
    if texts:
        print(f"  {label} ({len(texts)}):")
        for text in texts:
            print("    - " + " ".join(text.split()))


def _fallback_note(decision: Decision) -> str:
    if decision.router_fallback is None:
        return ""
    return f" (the LLM router did not decide: {decision.router_fallback})"


def _finite(value: object) -> object:
    """JSON has no Infinity or NaN (a threshold may be -inf): write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="turnout", description=__doc__)
    parser.add_argument("--version", action="version", version=f"turnout {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="serve the gateway on a config")
    up.add_argument("config")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, help="override the model listener's port")
    up.add_argument(
        "--workers", type=_int_at_least(1), default=1, help="worker processes sharing the port"
    )
    up.add_argument(
        "--shutdown-grace",
        type=_int_at_least(0),
        default=30,
        metavar="SECONDS",
        help="after SIGTERM, how long in-flight requests and streams may finish (default 30)",
    )
    up.set_defaults(handler=cmd_up)

    validate = commands.add_parser("validate", help="load and check a config")
    validate.add_argument("config")
    validate.set_defaults(handler=cmd_validate)

    route = commands.add_parser("route", help="print the routing decision for a conversation")
    route.add_argument("config")
    route.add_argument("text", nargs="?", help="one user message")
    route.add_argument(
        "--messages", help="a JSON file: a list of {role, content} or a chat request body"
    )
    route.set_defaults(handler=cmd_route)

    evaluate = commands.add_parser("eval", help="measure routers on labelled suites")
    evaluate.add_argument("suites", nargs="+", metavar="SUITE_DIR")
    evaluate.add_argument("--config", help="use this config's routes instead of each suite's")
    evaluate.add_argument("--json", action="store_true", help="machine-readable output")
    evaluate.add_argument(
        "--no-baseline", action="store_true", help="skip the description-cosine baseline"
    )
    evaluate.add_argument("--threads", type=int, default=1)
    evaluate.set_defaults(handler=cmd_eval)

    routes = commands.add_parser("routes", help="route examples: write them with an LLM, review")
    routes_commands = routes.add_subparsers(dest="routes_command", required=True)
    write = routes_commands.add_parser(
        "bootstrap", help="ask an LLM for example requests per route and cache them"
    )
    write.add_argument("config")
    write.add_argument(
        "--model", help="a configured provider/model or alias (default: routing.bootstrap.model)"
    )
    write.add_argument("--per-route", type=_int_at_least(1), help="requests per route (default 25)")
    write.add_argument(
        "--no-route", type=_int_at_least(0), help="requests that fit no route (default 40)"
    )
    write.add_argument("--out", help="the cache file (default: routing.bootstrap.cache_path)")
    write.set_defaults(handler=cmd_routes_bootstrap)
    show = routes_commands.add_parser("show", help="print each route with its examples")
    show.add_argument("config")
    show.add_argument("--cache", help="the cache file (default: routing.bootstrap.cache_path)")
    show.set_defaults(handler=cmd_routes_show)

    stats = commands.add_parser("stats", help="a live summary of a running gateway's metrics")
    stats.add_argument("url", nargs="?", default="http://127.0.0.1:12000")
    stats.add_argument("--interval", type=float, default=5.0, help="seconds between scrapes")
    stats.add_argument("--once", action="store_true", help="print one summary and exit")
    stats.set_defaults(handler=cmd_stats)
    return parser


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        number = int(value)
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {number}")
        return number

    return parse


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per upstream call


def main(argv: Sequence[str] | None = None) -> int:
    _configure_logging()
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as exc:
        return _fail(f"invalid config {exc.source}:\n{exc}", code=1)
    except StartupError as exc:
        return _fail(str(exc), code=1)
    except KeyboardInterrupt:
        return 130

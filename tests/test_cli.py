"""The `turnout` command as a user runs it: a real process, its exit code, and what it prints.

Each command runs as `python -m turnout ...` in a subprocess. Loading the embedding model costs
about a second a process, so the model-loading commands run once each and the tests share them:
one `turnout up` server for the module, one `turnout eval --json` run, one run of the demo script.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import DEMO_CONFIG, ROOT, SHARED_SUITES, free_port, serving

DEMO_SCRIPT = ROOT / "examples" / "model_routing_service" / "demo.sh"
SEED = SHARED_SUITES / "seed"
SECRET = "sk-secret-value"
KEY_VARIABLES = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")


def cli_env(**overrides: str) -> dict[str, str]:
    """The test process's environment without provider keys (and without COLUMNS, so output is
    formatted as when piped), plus `overrides`."""
    env = dict(os.environ)
    for name in (*KEY_VARIABLES, "COLUMNS"):
        env.pop(name, None)
    env.update(overrides)
    return env


def turnout(
    *args: str | Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "turnout", *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env() if env is None else env,
        cwd=ROOT,
    )


def assert_clean_failure(result: subprocess.CompletedProcess[str]) -> None:
    """A refusal a user can act on: a non-zero exit, a `turnout:` message, no Python traceback."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    assert "Traceback" not in result.stdout, result.stdout
    assert "turnout: " in result.stderr, result.stderr


def demo_text() -> str:
    return DEMO_CONFIG.read_text("utf-8")


def edited_demo(tmp_path: Path, *replacements: tuple[str, str], name: str = "config.yaml") -> Path:
    """The demo config with each `old` replaced by `new` (each must occur exactly once)."""
    text = demo_text()
    for old, new in replacements:
        assert text.count(old) == 1, f"the demo config no longer contains {old!r} exactly once"
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text, "utf-8")
    return path


UNKNOWN_MODEL = (
    "models: [openai/gpt-4o, openai/gpt-4o-mini]",
    "models: [openai/gpt-5, openai/gpt-4o-mini]",
)
DUPLICATE_ROUTE = ("name: code_generation", "name: complex_reasoning")
UNSET_PORT = ("port: 12000", "port: $TURNOUT_TEST_UNSET_PORT")
UNSET_DESCRIPTION = (
    "description: generating new code",
    "description: $TURNOUT_TEST_UNSET_DESC generating new code",
)


# ---------------------------------------------------------------- turnout validate


def test_validate_demo_config_is_ok_with_counts_and_warns_of_each_missing_key() -> None:
    result = turnout("validate", DEMO_CONFIG)

    assert result.returncode == 0, result.stderr
    assert f"{DEMO_CONFIG}: ok (3 model providers, 2 routes)" in result.stdout
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning: ")]
    assert any(
        "model_providers[0].access_key" in line and "OPENAI_API_KEY is not set" in line
        for line in warnings
    ), result.stdout
    assert any(
        "model_providers[2].access_key" in line and "ANTHROPIC_API_KEY" in line for line in warnings
    )
    assert "Traceback" not in result.stderr


def test_validate_never_prints_a_key_value(tmp_path: Path) -> None:
    env = cli_env(OPENAI_API_KEY=SECRET)
    ok = turnout("validate", DEMO_CONFIG, env=env)
    # The secret substituted where it does not belong: the type error must not echo the value.
    misplaced = turnout(
        "validate", edited_demo(tmp_path, ("port: 12000", "port: $OPENAI_API_KEY")), env=env
    )

    assert ok.returncode == 0, ok.stderr
    assert "model_providers[0].access_key" not in ok.stdout  # the key is set now: no warning
    assert "model_providers[2].access_key" in ok.stdout  # ANTHROPIC_API_KEY still is not
    assert_clean_failure(misplaced)
    assert "listeners[0].port" in misplaced.stderr
    for result in (ok, misplaced):
        assert SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("replacements", "expected"),
    [
        pytest.param(
            [UNKNOWN_MODEL],
            ["routing_preferences[0].models[0]: unknown model 'openai/gpt-5'"],
            id="unknown-model",
        ),
        pytest.param(
            [DUPLICATE_ROUTE],
            ["routing_preferences[1].name: duplicate route name 'complex_reasoning'"],
            id="duplicate-route",
        ),
        pytest.param(
            [UNSET_PORT],
            ["listeners[0].port: environment variable TURNOUT_TEST_UNSET_PORT is not set"],
            id="unset-variable",
        ),
        pytest.param(
            [UNSET_PORT, UNKNOWN_MODEL, UNSET_DESCRIPTION],
            [
                "listeners[0].port: environment variable TURNOUT_TEST_UNSET_PORT is not set",
                "routing_preferences[0].models[0]: unknown model 'openai/gpt-5'",
                "routing_preferences[1].description: environment variable TURNOUT_TEST_UNSET_DESC is not set",
            ],
            id="three-problems-at-once",
        ),
    ],
)
def test_validate_lists_every_problem_at_its_key_path(
    tmp_path: Path, replacements: list[tuple[str, str]], expected: list[str]
) -> None:
    config = edited_demo(tmp_path, *replacements)
    result = turnout("validate", config)

    assert_clean_failure(result)
    assert result.returncode == 1
    assert f"invalid config {config}" in result.stderr
    for problem in expected:
        assert problem in result.stderr.splitlines(), result.stderr
    assert ": ok (" not in result.stdout


def test_validate_reports_a_yaml_syntax_error_with_its_position(tmp_path: Path) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text(
        "version: v0.4.0\nmodel_providers:\n  - model: [openai/gpt-4o\n    default: true\n", "utf-8"
    )
    result = turnout("validate", config)

    assert_clean_failure(result)
    assert f"{config}, line 4, column" in result.stderr, result.stderr


def test_validate_reports_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    result = turnout("validate", missing)

    assert_clean_failure(result)
    assert f"{missing}: file not found" in result.stderr


# ---------------------------------------------------------------- turnout route


def route_lines(stdout: str) -> dict[str, str]:
    return {
        key: value.strip()
        for key, _, value in (line.partition(":") for line in stdout.splitlines()[:3])
    }


def test_route_sends_a_coding_request_to_code_generation() -> None:
    result = turnout("route", DEMO_CONFIG, "Write a Python function for binary search")

    assert result.returncode == 0, result.stderr
    assert "route:  code_generation" in result.stdout.splitlines()
    assert (
        route_lines(result.stdout)["models"] == "anthropic/claude-sonnet-4-20250514, openai/gpt-4o"
    )
    assert "code_generation" in result.stdout and "complex_reasoning" in result.stdout  # the scores


def test_route_leaves_small_talk_unrouted_on_the_default_model() -> None:
    result = turnout("route", DEMO_CONFIG, "hello!")

    assert result.returncode == 0, result.stderr
    lines = route_lines(result.stdout)
    assert lines["route"] == "(none)", result.stdout
    assert lines["models"] == "openai/gpt-4o-mini"  # the demo config's default model


def test_route_reads_a_conversation_from_a_messages_file(tmp_path: Path) -> None:
    messages = tmp_path / "conversation.json"
    messages.write_text(
        json.dumps(
            [
                {
                    "role": "user",
                    "content": "Write a Python function that returns the n-th Fibonacci number",
                },
                {
                    "role": "assistant",
                    "content": "```python\ndef fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n"
                    "        a, b = b, a + b\n    return a\n```",
                },
                {"role": "user", "content": "now add type hints"},
            ]
        ),
        "utf-8",
    )
    result = turnout("route", DEMO_CONFIG, "--messages", messages)

    assert result.returncode == 0, result.stderr
    assert route_lines(result.stdout)["route"] == "code_generation", result.stdout


def test_route_refuses_both_text_and_messages(tmp_path: Path) -> None:
    messages = tmp_path / "messages.json"
    messages.write_text('[{"role": "user", "content": "hi"}]', "utf-8")
    both = turnout("route", DEMO_CONFIG, "hello", "--messages", messages)
    neither = turnout("route", DEMO_CONFIG)

    for result in (both, neither):
        assert_clean_failure(result)
        assert "--messages FILE" in result.stderr
        assert "route:" not in result.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param('[{"role": "user", "content": "Write a fun', "messages.json: ", id="not-json"),
        pytest.param(
            '[{"role": "wizard", "content": "hi"}]', "messages[0].role", id="unknown-role"
        ),
        pytest.param(
            '{"model": "openai/gpt-4o"}', "`messages` is required", id="body-without-messages"
        ),
        pytest.param("[]", "`messages` must not be empty", id="empty"),
        pytest.param(None, "No such file", id="missing-file"),
    ],
)
def test_route_refuses_a_malformed_messages_file(
    tmp_path: Path, content: str | None, message: str
) -> None:
    messages = tmp_path / "messages.json"
    if content is not None:
        messages.write_text(content, "utf-8")
    result = turnout("route", DEMO_CONFIG, "--messages", messages)

    assert_clean_failure(result)
    assert message in result.stderr, result.stderr
    assert "route:" not in result.stdout


# ---------------------------------------------------------------- turnout eval


def _no_constant(name: str) -> object:
    raise ValueError(f"not JSON: {name}")


@pytest.fixture(scope="module")
def seed_eval() -> list[dict]:
    result = turnout("eval", SEED, "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    # Strict JSON: Python's parser would otherwise accept NaN and Infinity, which jq and others refuse.
    return json.loads(result.stdout, parse_constant=_no_constant)


def test_eval_json_has_the_embedded_router_and_the_baseline(seed_eval: list[dict]) -> None:
    assert isinstance(seed_eval, list)
    assert [(r["suite"], r["router"]) for r in seed_eval] == [
        ("seed", "embedded"),
        ("seed", "description-cosine"),
    ]


def test_eval_json_reports_every_metric(seed_eval: list[dict]) -> None:
    for result in seed_eval:
        for key in (
            "accuracy",
            "in_scope_top1",
            "no_route_precision",
            "no_route_recall",
            "per_route",
            "confusion",
            "latency_ms",
        ):
            assert key in result, (result["router"], key)
        assert set(result["per_route"]) >= {"complex_reasoning", "code_generation"}
        assert sum(cell["count"] for cell in result["confusion"]) == result["cases"] > 0
        latency = result["latency_ms"]
        assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]


def test_eval_embedded_router_gets_the_seed_suite_all_right(seed_eval: list[dict]) -> None:
    embedded = next(r for r in seed_eval if r["router"] == "embedded")
    assert embedded["accuracy"] == 1.0
    assert embedded["in_scope_top1"] == 1.0
    assert embedded["no_route_precision"] == embedded["no_route_recall"] == 1.0


def test_eval_table_names_both_routers() -> None:
    result = turnout("eval", SEED, timeout=120)  # stdout is a pipe, as in `turnout eval ... | tee`

    assert result.returncode == 0, result.stderr
    assert "embedded" in result.stdout
    assert "description-cosine" in result.stdout
    assert "routing accuracy" in result.stdout
    assert "seed" in result.stdout


def test_eval_refuses_a_suite_without_cases(tmp_path: Path) -> None:
    suite = tmp_path / "no-cases"
    suite.mkdir()
    shutil.copy(SEED / "routes.yaml", suite / "routes.yaml")
    result = turnout("eval", suite, "--json")

    assert_clean_failure(result)
    assert str(suite / "cases.jsonl") in result.stderr
    assert result.stdout == ""


def test_eval_names_the_missing_file_of_a_missing_suite(tmp_path: Path) -> None:
    result = turnout("eval", tmp_path / "nowhere")

    assert_clean_failure(result)
    assert str(tmp_path / "nowhere" / "routes.yaml") in result.stderr
    assert "None" not in result.stderr


# ---------------------------------------------------------------- turnout up


@dataclass
class Gateway:
    process: subprocess.Popen[str]
    url: str
    stdout: Path
    stderr: Path

    def log(self) -> str:
        return self.stderr.read_text("utf-8")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """`turnout up` on the demo config, with a provider key set that must never be logged."""
    logs = tmp_path_factory.mktemp("up")
    port = free_port()
    stdout, stderr = logs / "stdout", logs / "stderr"
    with stdout.open("w") as out, stderr.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "turnout", "up", str(DEMO_CONFIG), "--port", str(port)],
            stdout=out,
            stderr=err,
            text=True,
            env=cli_env(OPENAI_API_KEY=SECRET),
            cwd=ROOT,
        )
    gateway = Gateway(process, f"http://127.0.0.1:{port}", stdout, stderr)
    with serving(process, gateway.url, gateway.log, timeout=30):
        yield gateway


@pytest.fixture(scope="module")
def demo_run(served: Gateway) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(DEMO_SCRIPT), served.url],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env(),
        cwd=ROOT,
    )


def demo_responses(demo: subprocess.CompletedProcess[str]) -> list[dict]:
    """The decision the demo printed after each `=>`, in order."""
    return [
        json.loads(line.split("=> ", 1)[1]) for line in demo.stdout.splitlines() if "=> " in line
    ]


def test_up_logs_its_config_router_and_routes(served: Gateway) -> None:
    log = served.log()
    assert f"config {DEMO_CONFIG}" in log
    assert "router: embedded" in log
    assert "complex_reasoning" in log and "code_generation" in log
    assert f"on {served.url}" in log
    assert SECRET not in log


def test_demo_script_runs_against_the_gateway(demo_run: subprocess.CompletedProcess[str]) -> None:
    assert demo_run.returncode == 0, demo_run.stdout + demo_run.stderr
    # What the server emits: compact JSON, no space after the colon.
    assert '"route":"code_generation"' in demo_run.stdout
    assert '"route":"complex_reasoning"' in demo_run.stdout
    assert '"route":"translation"' in demo_run.stdout
    responses = demo_responses(demo_run)
    assert len(responses) == 5, demo_run.stdout
    assert [r["route"] for r in responses[:3]] == [
        "code_generation",
        "complex_reasoning",
        "code_generation",
    ]
    assert responses[0]["models"] == ["anthropic/claude-sonnet-4-20250514", "openai/gpt-4o"]
    # Inline routing_preferences replace the configured routes; ?explain=1 adds the scores.
    assert responses[4]["route"] == "translation"
    assert responses[4]["models"] == ["openai/gpt-4o"]
    assert set(responses[4]["scores"]) == {"translation", "code_generation"}


def test_demo_script_small_talk_gets_no_route(demo_run: subprocess.CompletedProcess[str]) -> None:
    assert demo_run.returncode == 0
    assert '"route":null' in demo_run.stdout, demo_run.stdout
    small_talk = demo_responses(demo_run)[3]
    assert small_talk["route"] is None
    assert small_talk["models"] == ["openai/gpt-4o"]  # the request's own model


def test_up_refuses_an_invalid_config(tmp_path: Path) -> None:
    config = edited_demo(tmp_path, DUPLICATE_ROUTE)
    result = turnout("up", config, "--port", str(free_port()), timeout=30)

    assert_clean_failure(result)
    assert "routing_preferences[1].name: duplicate route name 'complex_reasoning'" in result.stderr


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        (
            {"ANTHROPIC_API_KEY": "sk-x"},
            "anthropic/claude-sonnet-4-20250514 must be served by an OpenAI-compatible endpoint",
        ),
        ({}, "no API key for anthropic/claude-sonnet-4-20250514"),
    ],
)
def test_up_refuses_a_router_model_it_cannot_call(
    tmp_path: Path, env: dict[str, str], problem: str
) -> None:
    config = edited_demo(
        tmp_path,
        (
            "version: v0.4.0",
            "version: v0.4.0\noverrides:\n  llm_routing_model: claude-sonnet-4-20250514",
        ),
    )
    result = turnout("up", config, "--port", str(free_port()), env=cli_env(**env), timeout=60)

    assert_clean_failure(result)
    assert f"overrides.llm_routing_model: {problem}" in result.stderr
    assert "sk-x" not in result.stderr


def test_up_refuses_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = turnout("up", DEMO_CONFIG, "--port", str(port), timeout=60)

    assert result.returncode != 0
    assert "address already in use" in result.stderr.lower(), result.stderr
    assert str(port) in result.stderr
    assert "Traceback" not in result.stderr


def test_up_stops_cleanly_on_sigterm(
    served: Gateway, demo_run: subprocess.CompletedProcess[str]
) -> None:
    # Last in the module: it stops the shared server (after the demo has run against it).
    served.process.send_signal(signal.SIGTERM)
    try:
        code = served.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"turnout up still running 10 s after SIGTERM:\n{served.log()}")

    assert code == 0, served.log()
    log = served.log()
    assert log.rstrip().endswith("stopped"), log
    assert "Traceback" not in log
    assert SECRET not in log + served.stdout.read_text("utf-8")


def test_the_listening_socket_is_tcp_so_connections_get_nodelay() -> None:
    """asyncio sets TCP_NODELAY only on sockets whose protocol is TCP; without it, keep-alive
    clients wait ~40 ms per response (Nagle against delayed ACKs)."""
    from turnout.server.runner import bind

    listener = bind("127.0.0.1", 0)
    try:
        assert listener.proto == socket.IPPROTO_TCP
    finally:
        listener.close()

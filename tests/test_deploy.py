"""The deployment files, as a user applies them: Kubernetes manifests the API server accepts,
wired to each other, to turnout's configs and to the container image; the image's command run
on this machine; and the walkthrough in docs/deployment.md naming what the files define.

Everything here runs offline. There is no Docker engine on this machine, so the image itself is
not built: its Dockerfile is parsed and its command run with this Python.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from argparse import Namespace
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml
from conftest import ROOT, free_port, serving
from dockerfile_parse import DockerfileParser

from turnout import cli

KUBE = ROOT / "deploy" / "kubernetes"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCS = ROOT / "docs" / "deployment.md"
CONFIG = KUBE / "config.yaml"
ROUTER_CONFIG = KUBE / "config-with-router.yaml"
TURNOUT_CONFIGS = (CONFIG, ROUTER_CONFIG)
BASE = KUBE / "base"
WITH_ROUTER = KUBE / "with-router"
# Patches a user may add to a kustomization; they are not valid objects on their own.
OPTIONAL_PATCHES = (WITH_ROUTER / "gpu-node-selector.yaml",)
# The oldest and newest Kubernetes versions whose API schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.25", "1.37")
IMAGE_CONFIG = "/etc/turnout/config.yaml"  # where the image's command reads its config
PROVIDER_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")
KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl (for kustomize) not installed")


# ---------------------------------------------------------------- reading the files


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text("utf-8")) if doc]


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def kustomizations() -> list[Path]:
    return sorted(KUBE.rglob("kustomization.yaml"))


def kustomize_entries(kustomization: Path, key: str) -> list[Path]:
    """The `resources` or `patches` a kustomization names, as paths."""
    entries = documents(kustomization)[0].get(key, [])
    return [kustomization.parent / (e["path"] if isinstance(e, dict) else e) for e in entries]


def kustomize_objects(directory: Path) -> list[dict[str, Any]]:
    """What `kubectl apply -k directory` creates: its resources, recursively. These
    kustomizations use no patches or generators (test_kustomize_builds_the_same_objects checks
    this against kubectl's own kustomize)."""
    objects: list[dict[str, Any]] = []
    for path in kustomize_entries(directory / "kustomization.yaml", "resources"):
        objects += kustomize_objects(path) if path.is_dir() else documents(path)
    return objects


def kustomized(key: str) -> set[Path]:
    """The files that some kustomization names as `resources` or `patches`."""
    paths = {p.resolve() for k in kustomizations() for p in kustomize_entries(k, key)}
    return {p for p in paths if p.is_file()}


def manifest_files() -> list[Path]:
    """Every Kubernetes manifest: the YAML under deploy/kubernetes but kustomizations, patches
    and turnout's configs."""
    skipped = {*kustomizations(), *TURNOUT_CONFIGS, *OPTIONAL_PATCHES}
    return sorted(
        path
        for path in KUBE.rglob("*.yaml")
        if path not in skipped and path.resolve() not in kustomized("patches")
    )


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def all_objects() -> list[dict[str, Any]]:
    return kustomize_objects(WITH_ROUTER)


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = pod_spec(deployment)["containers"]
    return only


def port_number(deployment: dict[str, Any], port: int | str) -> int:
    """A container port given by number or by name."""
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container(deployment)["ports"]}
    assert port in named, f"{deployment['metadata']['name']} has no port named {port}"
    return named[port]


def selected_deployment(service: dict[str, Any], objects: list[dict[str, Any]]) -> dict[str, Any]:
    selector = service["spec"]["selector"].items()
    matches = [
        o
        for o in objects
        if o["kind"] == "Deployment"
        and selector <= o["spec"]["template"]["metadata"]["labels"].items()
    ]
    assert len(matches) == 1, (
        f"Service {service['metadata']['name']} selects {len(matches)} Deployments"
    )
    return matches[0]


def turnout_deployment() -> dict[str, Any]:
    return find(kustomize_objects(BASE), "Deployment", "turnout")


def raw_config(path: Path) -> dict[str, Any]:
    return documents(path)[0]


def config_port(path: Path) -> int:
    (listener,) = [x for x in raw_config(path)["listeners"] if x["type"] == "model"]
    return listener["port"]


def parse_up(args: list[str]) -> Namespace:
    """`turnout up`'s arguments as turnout's own parser reads them."""
    try:
        return cli.build_parser().parse_args(["up", *args])
    except SystemExit:
        pytest.fail(f"turnout up rejects the arguments {args}")


@cache
def dockerfile() -> DockerfileParser:
    return DockerfileParser(path=str(DOCKERFILE))


def final_stage() -> list[dict[str, str]]:
    instructions = dockerfile().structure
    last_from = max(i for i, x in enumerate(instructions) if x["instruction"] == "FROM")
    return instructions[last_from:]


def instruction(name: str) -> str:
    """The value of the final stage's last `name` instruction (the one that takes effect)."""
    values = [x["value"] for x in final_stage() if x["instruction"] == name]
    assert values, f"the final stage has no {name}"
    return values[-1]


def image_command() -> tuple[list[str], list[str]]:
    return json.loads(instruction("ENTRYPOINT")), json.loads(instruction("CMD"))


def healthcheck_command() -> list[str]:
    command = instruction("HEALTHCHECK").partition(" CMD ")[2]
    assert command, "HEALTHCHECK has no CMD"
    return json.loads(command)


def exposed_port() -> int:
    return int(instruction("EXPOSE").split("/")[0])


# ---------------------------------------------------------------- the manifests


def assert_valid(document: dict[str, Any], version: str, source: str) -> None:
    """`document` is accepted by the Kubernetes API `version` (strict: no unknown field)."""
    kind, name = document["kind"], document["metadata"]["name"]
    try:
        kubernetes_validate.validate(document, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(map(str, exc.path))
        pytest.fail(f"{source}: {kind} {name}: {where}: {exc.message}", pytrace=False)
    except kubernetes_validate.SchemaNotFoundError as exc:
        pytest.fail(f"{source}: {exc.message}", pytrace=False)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", manifest_files(), ids=relative)
def test_manifest_validates_against_the_kubernetes_api(path: Path, version: str) -> None:
    for document in documents(path):
        assert_valid(document, version, relative(path))


def test_every_manifest_is_applied_by_a_kustomization() -> None:
    applied = kustomized("resources")
    orphans = [relative(p) for p in manifest_files() if p.resolve() not in applied]
    assert not orphans, f"no kustomization applies {orphans}"
    assert {relative(p) for p in manifest_files()} >= {
        "deploy/kubernetes/base/turnout.yaml",
        "deploy/kubernetes/base/redis.yaml",
        "deploy/kubernetes/with-router/arch-router.yaml",
    }


@pytest.mark.parametrize("kustomization", kustomizations(), ids=relative)
def test_kustomization_entries_exist_where_kustomize_loads_them(kustomization: Path) -> None:
    root = kustomization.parent.resolve()
    entries = kustomize_entries(kustomization, "resources")
    for entry in entries + kustomize_entries(kustomization, "patches"):
        target = entry.resolve()
        if target.is_dir():
            assert (target / "kustomization.yaml").is_file(), f"{entry} is not a kustomization"
            # kustomize refuses a base that contains the kustomization using it.
            assert not root.is_relative_to(target), f"{entry} contains {kustomization}"
        else:
            assert target.is_file(), f"{entry} does not exist"
            # kustomize loads no file from outside the kustomization's own directory.
            assert target.is_relative_to(root), f"{entry} is outside {root}"
    spec = documents(kustomization)[0]
    # The walkthrough has users create the config and their keys with kubectl.
    assert "configMapGenerator" not in spec and "secretGenerator" not in spec


@needs_kubectl
@pytest.mark.parametrize("kustomization", kustomizations(), ids=relative)
def test_kustomize_builds_the_same_objects(kustomization: Path) -> None:
    built = kustomize_build(kustomization.parent)
    expected = kustomize_objects(kustomization.parent)
    assert sorted(names(built)) == sorted(names(expected))
    for document in built:
        for version in KUBERNETES_VERSIONS:
            assert_valid(document, version, f"kubectl kustomize {relative(kustomization.parent)}")


@needs_kubectl
def test_optional_gpu_node_selector_patch_applies(tmp_path: Path) -> None:
    """As documented: list the patch under `patches:` of the with-router kustomization."""
    (patch,) = OPTIONAL_PATCHES
    shutil.copy(patch, tmp_path / patch.name)
    overlay = {
        "resources": [os.path.relpath(WITH_ROUTER, tmp_path)],
        "patches": [{"path": patch.name}],
    }
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(overlay), "utf-8")

    built = kustomize_build(tmp_path)

    router = find(built, "Deployment", "arch-router")
    assert pod_spec(router)["nodeSelector"] == pod_spec(documents(patch)[0])["nodeSelector"]
    assert container(router) == container(find(all_objects(), "Deployment", "arch-router"))
    for version in KUBERNETES_VERSIONS:
        assert_valid(router, version, f"with-router + {patch.name}")


def kustomize_build(directory: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [KUBECTL or "kubectl", "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def names(objects: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(o["kind"], o["metadata"]["name"]) for o in objects]


# ---------------------------------------------------------------- manifests and configs agree


@pytest.mark.parametrize("path", TURNOUT_CONFIGS, ids=relative)
def test_turnout_config_validates(path: Path) -> None:
    assert cli.main(["validate", str(path)]) == 0


def test_deployment_mounts_the_configmap_where_the_container_reads_its_config() -> None:
    deployment = turnout_deployment()
    config_path = Path(parse_up(container(deployment)["args"]).config)
    (mount,) = [
        m
        for m in container(deployment)["volumeMounts"]
        if m["mountPath"] == str(config_path.parent)
    ]
    volume = next(v for v in pod_spec(deployment)["volumes"] if v["name"] == mount["name"])

    assert volume["configMap"]["name"] == "turnout-config"
    assert volume["configMap"]["items"] == [{"key": "config.yaml", "path": config_path.name}]


@pytest.mark.parametrize("path", TURNOUT_CONFIGS, ids=relative)
def test_container_service_and_probes_use_the_config_port(path: Path) -> None:
    deployment = turnout_deployment()
    port = config_port(path)
    args = parse_up(container(deployment)["args"])
    assert args.port is None  # the config's listener port applies
    assert port_number(deployment, "http") == port

    objects = kustomize_objects(BASE)
    service = find(objects, "Service", "turnout")
    (service_port,) = service["spec"]["ports"]
    assert selected_deployment(service, objects)["metadata"]["name"] == "turnout"
    assert port_number(deployment, service_port["targetPort"]) == port
    assert service_port["port"] == port  # in-cluster clients use the same port as the docs

    probes = {
        name: container(deployment)[f"{name}Probe"]["httpGet"]
        for name in ("startup", "liveness", "readiness")
    }
    assert {name: probe["path"] for name, probe in probes.items()} == {
        "startup": "/healthz",
        "liveness": "/healthz",
        "readiness": "/readyz",
    }
    assert {port_number(deployment, probe["port"]) for probe in probes.values()} == {port}


def test_in_flight_requests_finish_within_the_termination_grace_period() -> None:
    deployment = turnout_deployment()
    grace = parse_up(container(deployment)["args"]).shutdown_grace
    sleep = container(deployment)["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"

    assert int(sleep[1]) + grace < pod_spec(deployment)["terminationGracePeriodSeconds"]


def test_turnout_pods_run_locked_down() -> None:
    deployment = turnout_deployment()
    pod = pod_spec(deployment)["securityContext"]
    own = container(deployment)["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert own["readOnlyRootFilesystem"] is True
    assert own["allowPrivilegeEscalation"] is False
    assert own["capabilities"]["drop"] == ["ALL"]
    assert pod["runAsUser"] == image_user()
    tmp = next(m for m in container(deployment)["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in next(
        v for v in pod_spec(deployment)["volumes"] if v["name"] == tmp["name"]
    )


def test_updates_and_disruptions_keep_a_pod_serving() -> None:
    objects = kustomize_objects(BASE)
    deployment = turnout_deployment()
    labels = deployment["spec"]["template"]["metadata"]["labels"].items()
    budget = find(objects, "PodDisruptionBudget", "turnout")
    autoscaler = find(objects, "HorizontalPodAutoscaler", "turnout")

    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels
    assert budget["spec"]["minAvailable"] < autoscaler["spec"]["minReplicas"]
    assert autoscaler["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "turnout",
    }
    assert deployment["spec"]["replicas"] == autoscaler["spec"]["minReplicas"]


def test_every_service_reaches_a_container_port() -> None:
    objects = all_objects()
    for service in (o for o in objects if o["kind"] == "Service"):
        deployment = selected_deployment(service, objects)
        for port in service["spec"]["ports"]:
            port_number(deployment, port["targetPort"])


def router_provider(config: dict[str, Any]) -> dict[str, Any]:
    """The model provider entry that `overrides.llm_routing_model` names."""
    name = config["overrides"]["llm_routing_model"]
    (provider,) = [p for p in config["model_providers"] if p["model"] == name]
    return provider


def test_config_with_router_calls_the_router_service_by_its_served_name() -> None:
    config = raw_config(ROUTER_CONFIG)
    router_model = config["overrides"]["llm_routing_model"]
    url = httpx.URL(router_provider(config)["base_url"])
    objects = all_objects()

    service = find(objects, "Service", url.host)
    assert url.port in {p["port"] for p in service["spec"]["ports"]}
    vllm = container(selected_deployment(service, objects))
    command = [*vllm["command"], *vllm["args"]]
    served = command[command.index("--served-model-name") + 1]
    assert served == router_model.split("/", 1)[1]
    listen = int(command[command.index("--port") + 1])
    (target,) = [p["targetPort"] for p in service["spec"]["ports"] if p["port"] == url.port]
    assert port_number(selected_deployment(service, objects), target) == listen


def test_router_gets_a_gpu_and_generous_startup() -> None:
    router = find(all_objects(), "Deployment", "arch-router")
    resources = container(router)["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod_spec(
        router
    )["tolerations"]
    startup = container(router)["startupProbe"]
    assert startup["httpGet"]["path"] == "/health"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 15 * 60


def test_configs_use_the_redis_service() -> None:
    redis = find(kustomize_objects(BASE), "Service", "redis")
    for path in TURNOUT_CONFIGS:
        url = httpx.URL(raw_config(path)["routing"]["session_cache"]["url"])
        assert url.host == redis["metadata"]["name"]
        assert url.port in {p["port"] for p in redis["spec"]["ports"]}


# ---------------------------------------------------------------- the Dockerfile


def image_user() -> int:
    user = instruction("USER").split(":")[0]
    assert user.isdigit(), "Kubernetes can check runAsNonRoot only for a numeric USER"
    return int(user)


def test_image_runs_as_a_non_root_numeric_user() -> None:
    assert image_user() > 0


def test_image_is_built_in_stages_on_python_slim() -> None:
    assert dockerfile().is_multistage
    assert dockerfile().baseimage == "python:3.11-slim"
    final = " ".join(x["value"] for x in final_stage() if x["instruction"] == "RUN")
    assert "pip install" not in final and "apt-get" not in final  # it copies the built environment
    assert any(
        x["value"].startswith("--from=") for x in final_stage() if x["instruction"] == "COPY"
    )


def test_image_copies_only_files_the_repository_has() -> None:
    """The build context is the repository root (`docker build -f deploy/Dockerfile .`)."""
    for copy in (x for x in dockerfile().structure if x["instruction"] == "COPY"):
        words = copy["value"].split()
        if words[0].startswith("--from="):
            continue
        for source in words[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_image_checks_its_embedded_model_at_build_time() -> None:
    runs = [x["value"] for x in final_stage() if x["instruction"] == "RUN"]
    assert any("Embedder()" in run for run in runs)


def test_image_command_is_turnout_up_on_the_mounted_config() -> None:
    entrypoint, cmd = image_command()
    assert entrypoint == ["turnout", "up"]
    args = parse_up(cmd)
    assert args.config == IMAGE_CONFIG
    assert args.host == "0.0.0.0"
    assert exposed_port() == config_port(CONFIG)


def test_deployment_runs_the_image_command() -> None:
    turnout = container(turnout_deployment())
    entrypoint, cmd = image_command()
    assert turnout.get("command", entrypoint) == entrypoint
    deployed, image = parse_up(turnout["args"]), parse_up(cmd)
    assert (deployed.config, deployed.host) == (image.config, image.host)


def test_healthcheck_asks_healthz_on_the_exposed_port() -> None:
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"]
    assert re.search(rf"http://127\.0\.0\.1:{exposed_port()}/healthz\b", command[2])


# ---------------------------------------------------------------- the image's command, run here


@dataclass
class Gateway:
    process: subprocess.Popen[str]
    port: int
    workdir: Path  # its working directory; HOME is workdir/home
    stderr: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.stderr.read_text("utf-8")


def container_command(config: Path, port: int) -> list[str]:
    """The image's ENTRYPOINT + CMD as this machine runs them: turnout from this Python, a
    config file of the repository in place of the mounted one, a free loopback port."""
    entrypoint, cmd = image_command()
    assert entrypoint[0] == "turnout"
    swap = {IMAGE_CONFIG: str(config), "0.0.0.0": "127.0.0.1"}
    argv = [swap.get(arg, arg) for arg in [*entrypoint[1:], *cmd]]
    return [sys.executable, "-m", "turnout", *argv, "--port", str(port)]


def container_env(home: Path) -> dict[str, str]:
    """This environment without provider keys, plus the image's ENV and an empty HOME."""
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_KEYS}
    env.update({k: v for k, v in dockerfile().envs.items() if k != "PATH"})
    env["HOME"] = str(home)
    return env


@contextmanager
def running(config: Path, workdir: Path) -> Iterator[Gateway]:
    port = free_port()
    home = workdir / "home"
    home.mkdir()
    stderr = workdir / "stderr"
    with stderr.open("w") as err:
        process = subprocess.Popen(
            container_command(config, port),
            stdout=err,
            stderr=err,
            text=True,
            env=container_env(home),
            cwd=workdir,
        )
    gateway = Gateway(process, port, workdir, stderr)
    with serving(process, gateway.url, gateway.log):
        yield gateway


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running(CONFIG, tmp_path_factory.mktemp("container")) as gateway:
        yield gateway


def run_healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command, with this Python and the port swapped."""
    _, flag, code = healthcheck_command()
    code = code.replace(f"127.0.0.1:{exposed_port()}", f"127.0.0.1:{port}")
    return subprocess.run(
        [sys.executable, flag, code], capture_output=True, text=True, timeout=30, check=False
    )


def test_container_serves_health_and_readiness(served: Gateway) -> None:
    health = httpx.get(f"{served.url}/healthz", timeout=5)
    ready = httpx.get(f"{served.url}/readyz", timeout=5)

    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"


def test_container_healthcheck_passes_on_a_running_gateway(served: Gateway) -> None:
    result = run_healthcheck(served.port)
    assert result.returncode == 0, result.stderr


def test_container_healthcheck_fails_without_a_gateway() -> None:
    assert run_healthcheck(free_port()).returncode != 0


def test_walkthrough_request_gets_a_routing_decision(served: Gateway) -> None:
    (curl,) = [c for c in doc_commands() if c[0] == "curl"]
    url = httpx.URL("http://" + next(arg for arg in curl if arg.startswith("localhost:")))
    headers: dict[str, str] = {}
    for flag, value in pairwise(curl):
        if flag == "-H":
            name, _, header = value.partition(":")
            headers[name] = header.strip()
    body = curl[curl.index("-d") + 1]

    reply = httpx.post(f"{served.url}{url.path}", headers=headers, content=body, timeout=10)

    assert reply.status_code == 200, reply.text
    assert reply.json()["route"] == "code_generation"


def test_container_writes_nothing_to_disk(served: Gateway) -> None:
    """The pod's root filesystem is read-only. (Without the image's ORT_DISABLE_TELEMETRY,
    onnxruntime writes a telemetry database under HOME.)"""
    assert httpx.get(f"{served.url}/readyz", timeout=5).status_code == 200
    assert sorted(p.name for p in served.workdir.iterdir()) == ["home", "stderr"]
    assert list((served.workdir / "home").rglob("*")) == []


def test_container_stops_cleanly_on_sigterm(served: Gateway) -> None:
    # Last of the tests on the shared container: it stops it.
    served.process.send_signal(signal.SIGTERM)
    try:
        code = served.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running 10 s after SIGTERM:\n{served.log()}")
    assert code == 0, served.log()


def test_turnout_serves_while_the_router_is_down(tmp_path: Path) -> None:
    """config-with-router.yaml with nothing listening at the router's address, as while vLLM
    is still downloading its model."""
    down = f"http://127.0.0.1:{free_port()}"
    text = ROUTER_CONFIG.read_text("utf-8")
    router_url = router_provider(raw_config(ROUTER_CONFIG))["base_url"]
    assert router_url in text
    config = tmp_path / "config.yaml"
    config.write_text(text.replace(router_url, down), "utf-8")

    with running(config, tmp_path) as gateway:
        ready = httpx.get(f"{gateway.url}/readyz", timeout=5)
        decision = httpx.post(
            f"{gateway.url}/routing/v1/chat/completions",
            json={
                "messages": [{"role": "user", "content": "write a python function to sort a list"}]
            },
            timeout=10,
        )

    assert ready.status_code == 200, ready.text
    assert decision.status_code == 200, decision.text
    assert decision.json()["route"] == "code_generation"


# ---------------------------------------------------------------- docs/deployment.md


@cache
def doc_commands() -> tuple[tuple[str, ...], ...]:
    """The page's shell commands, as argument lists: the lines of its `sh` blocks and its inline
    `kubectl ...`, `docker ...` and `turnout ...` code. A pipeline gives one list per command."""
    text = DOCS.read_text("utf-8")
    lines = [
        line
        for block in re.findall(r"```sh\n(.*?)```", text, re.DOTALL)
        for line in block.replace("\\\n", " ").splitlines()
    ]
    lines += re.findall(r"`((?:kubectl|docker|turnout) [^`]+)`", text)
    commands: list[tuple[str, ...]] = []
    for line in lines:
        command: list[str] = []
        for token in [*shlex.split(line, comments=True), "|"]:
            if token == "|":
                if command:
                    commands.append(tuple(command))
                command = []
            else:
                command.append(token)
    return tuple(commands)


def kubectl(*verb: str) -> list[tuple[str, ...]]:
    """The documented commands `kubectl <verb> ...`."""
    return [c for c in doc_commands() if c[: len(verb) + 1] == ("kubectl", *verb)]


def options(command: tuple[str, ...], name: str) -> list[str]:
    """The values of `name=value` and `name value` options."""
    values = [arg.split("=", 1)[1] for arg in command if arg.startswith(f"{name}=")]
    return values + [command[i + 1] for i, arg in enumerate(command) if arg == name]


def config_variables(path: Path) -> set[str]:
    return {
        name
        for provider in raw_config(path)["model_providers"]
        for name in re.findall(r"\$\{?(\w+)", provider.get("access_key", ""))
    }


def test_docs_create_the_secrets_the_pods_read() -> None:
    objects = all_objects()
    (keys,) = [s["secretRef"]["name"] for s in container(turnout_deployment())["envFrom"]]
    # (secret, key) of every variable a pod takes from a Secret by key
    by_key = {
        (ref["name"], ref["key"])
        for deployment in (o for o in objects if o["kind"] == "Deployment")
        for variable in container(deployment).get("env", [])
        if (ref := variable.get("valueFrom", {}).get("secretKeyRef"))
    }
    created: dict[str, set[str]] = {}
    for command in kubectl("create", "secret", "generic"):
        literals = {literal.split("=", 1)[0] for literal in options(command, "--from-literal")}
        created.setdefault(command[4], set()).update(literals)

    assert set(created) == {keys} | {name for name, _ in by_key}
    assert created[keys] >= config_variables(CONFIG) | config_variables(ROUTER_CONFIG)
    for name, key in by_key:
        assert key in created[name], f"the docs create Secret {name} without {key}"


def test_docs_create_the_configmap_the_deployment_mounts() -> None:
    volumes = pod_spec(turnout_deployment())["volumes"]
    (config_map,) = [v["configMap"] for v in volumes if "configMap" in v]
    created = kubectl("create", "configmap")
    loaded = set()
    for command in created:
        assert command[3] == config_map["name"]
        for source in options(command, "--from-file"):
            key, path = source.split("=", 1)
            assert key == config_map["items"][0]["key"]
            loaded.add(ROOT / path)
    assert loaded == set(TURNOUT_CONFIGS)


def test_docs_apply_the_kustomizations_and_files_the_repository_has() -> None:
    applied = {ROOT / command[3] for command in kubectl("apply", "-k")}
    assert applied == {k.parent for k in kustomizations()}
    for command in kubectl("apply", "-f") + kubectl("delete", "-f"):
        assert command[3] == "-" or (ROOT / command[3]).is_file(), command


def test_docs_name_objects_the_manifests_define() -> None:
    kinds = {"deployment": "Deployment", "service": "Service"}
    references = [
        re.fullmatch(r"(deployment|service)/([\w-]+)", arg)
        for command in doc_commands()
        if command[0] == "kubectl"
        for arg in command
    ]
    referenced = {(kinds[m[1]], m[2]) for m in references if m}
    assert ("Deployment", "turnout") in referenced and ("Service", "turnout") in referenced
    assert referenced <= set(names(all_objects()))


def test_docs_port_forward_matches_the_service_and_the_requests() -> None:
    (forward,) = kubectl("port-forward")
    kind, name = forward[2].split("/")
    local, remote = forward[3].split(":")
    service = find(all_objects(), kind.capitalize(), name)

    assert int(remote) in {p["port"] for p in service["spec"]["ports"]}
    assert set(re.findall(r"localhost:(\d+)", DOCS.read_text("utf-8"))) == {local}


def test_docs_docker_commands_match_the_dockerfile() -> None:
    (build,) = [c for c in doc_commands() if c[:2] == ("docker", "build")]
    assert ROOT / options(build, "-f")[0] == DOCKERFILE
    assert build[-1] == "."  # the context the Dockerfile's COPY lines expect
    (run,) = [c for c in doc_commands() if c[:2] == ("docker", "run")]
    assert options(run, "-p")[0].split(":")[1] == str(exposed_port())
    assert options(run, "-v")[0].split(":")[1] == IMAGE_CONFIG


def test_docs_router_config_excerpt_matches_the_file() -> None:
    config = raw_config(ROUTER_CONFIG)
    (excerpt,) = [
        yaml.safe_load(b)
        for b in re.findall(r"```yaml\n(.*?)```", DOCS.read_text("utf-8"), re.DOTALL)
    ]
    assert excerpt["overrides"] == config["overrides"]
    for provider in excerpt["model_providers"]:
        assert provider in config["model_providers"]

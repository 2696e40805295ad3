"""docker-compose.yml, the Dockerfile and .dockerignore, checked without a Docker engine.

- the compose file validates against the Compose Specification JSON Schema vendored in
  deploy/compose/ (see its README for the source and version);
- every ELIGIBILITY_* variable it sets is one the code reads (found by calling
  `WorkerSettings.from_env` with a mapping that records every name asked for), and the
  workers get what they need: brokers, Redis, a real pseudonym key, /metrics on 0.0.0.0;
- every Kafka client agrees on the brokers and the topic names (prefix), and the brokers
  are the kafka service's advertised container listener;
- start order (depends_on conditions), health checks, restart policies, pinned images,
  mounted files that exist, Prometheus scraping exactly the workers at their web port,
  Grafana provisioned from mounted folders with Prometheus at its compose address;
- `docker compose config` accepts the file (skipped without the compose plugin: it needs
  no engine, only the client plugin).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from jsonschema import Draft202012Validator

from stream.kafka.client import BROKERS_ENV, PREFIX_ENV, KafkaSettings
from stream.kafka.topics import ALL_TOPICS, TOPICS_DIR
from stream.keys import KEY_ENV, KEY_FILE_ENV
from stream.settings import WorkerSettings

ROOT = Path(__file__).parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SCHEMA_FILE = ROOT / "deploy" / "compose" / "compose-spec.schema.json"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

WORKERS = ("worker-1", "worker-2")
MUST_BE_HEALTHY = ("kafka", "redis", *WORKERS)
PROMETHEUS_JOB = "eligibility-worker"
# Set only by tests: a compose file must never crash its workers on purpose.
TEST_ONLY = frozenset({"ELIGIBILITY_TEST_CRASH_AFTER_COMMIT"})
# What the interpolation gets for the variables the file requires from the shell.
SHELL_ENV = {KEY_ENV: "compose-test-pseudonym-key-0123456789"}

Env = dict[str, str]


# --- the code's variables -------------------------------------------------------------


class _Recorder(dict[str, str]):
    """An environment that remembers every name it was asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.asked.add(key)
        return super().__contains__(key)


@cache
def code_variables() -> frozenset[str]:
    """Every ELIGIBILITY_* variable the worker and the Kafka commands read."""
    recorder = _Recorder()
    WorkerSettings.from_env(recorder)  # reads KafkaSettings.from_env too
    names = {name for name in recorder.asked if name.startswith("ELIGIBILITY_")}
    names |= {KEY_ENV, KEY_FILE_ENV}  # stream/keys.py reads os.environ itself
    return frozenset(names)


def test_the_recorder_sees_the_settings() -> None:
    names = code_variables()
    for name in (BROKERS_ENV, PREFIX_ENV, "ELIGIBILITY_REDIS_URL", "ELIGIBILITY_WEB_PORT"):
        assert name in names


# --- the compose file -------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))  # anchors, merge keys
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose()["services"]
    return result


_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>\w+)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|(?P<bare>\w+))"
)


def interpolate(value: str, shell: Mapping[str, str]) -> str:
    """Compose's interpolation: $$, $VAR, ${VAR}, ${VAR:-x}, ${VAR-x}, ${VAR:?e}, ${VAR:+x}."""

    def one(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        present = name in shell
        value = shell.get(name, "")
        if op in (":-", "-"):
            return value if (value if op == ":-" else present) else arg
        if op in (":?", "?"):
            if not (value if op == ":?" else present):
                raise ValueError(f"{name} is required: {arg}")
            return value
        if op in (":+", "+"):
            return arg if (value if op == ":+" else present) else ""
        return value

    return _VARIABLE.sub(one, value)


def raw_environment(service: Mapping[str, Any]) -> dict[str, str | None]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, None) for item in env)
        return {name: value for name, value in pairs}
    return {name: None if value is None else str(value) for name, value in env.items()}


def environment(name: str, shell: Mapping[str, str] = SHELL_ENV) -> Env:
    """A service's environment as its container sees it (unset pass-throughs left out)."""
    return {
        key: interpolate(value, shell)
        for key, value in raw_environment(services()[name]).items()
        if value is not None
    }


def filter_services() -> list[str]:
    """The services that run this repository's image."""
    return [name for name, service in services().items() if "build" in service]


def kafka_clients() -> list[str]:
    """Filter services that talk to Kafka: all but offline replays."""
    return [name for name in filter_services() if "--offline" not in command(name)]


def command(name: str) -> list[str]:
    cmd = services()[name].get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(part) for part in cmd]


def depends_on(name: str) -> dict[str, str]:
    """depends_on as {service: condition}."""
    deps = services()[name].get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {dep: spec.get("condition", "service_started") for dep, spec in deps.items()}


def has_healthcheck(name: str) -> bool:
    check = services()[name].get("healthcheck")
    if check is not None:
        return not check.get("disable") and bool(check.get("test"))
    return "build" in services()[name] and "HEALTHCHECK" in dockerfile_instructions()


@cache
def dockerfile_instructions() -> dict[str, list[str]]:
    """Instruction -> arguments of each occurrence, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    found: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        found.setdefault(instruction.upper(), []).append(args.strip())
    return found


def bind_mounts(name: str) -> Iterator[tuple[Path, PurePosixPath]]:
    """(host path, container path) of each bind mount of a service."""
    for volume in services()[name].get("volumes") or []:
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            target = rest.split(":")[0]
            if not source.startswith((".", "/", "~")):
                continue  # a named volume
        else:
            if volume.get("type") != "bind":
                continue
            source, target = volume["source"], volume["target"]
        yield (ROOT / source).resolve(), PurePosixPath(target)


def host_path(name: str, container_path: str) -> Path:
    """The repository file a service sees at `container_path` through its bind mounts."""
    wanted = PurePosixPath(container_path)
    for host, target in bind_mounts(name):
        if wanted == target or target in wanted.parents:
            return host.joinpath(*wanted.relative_to(target).parts)
    raise AssertionError(f"{name}: nothing of the repository is mounted at {container_path}")


def option(name: str, flag: str) -> str:
    """The value of `--flag=value` or `--flag value` in a service's command."""
    args = command(name)
    for i, arg in enumerate(args):
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
    raise AssertionError(f"{name}: no {flag} in its command {args}")


# --- schema and shape -------------------------------------------------------------------


def test_validates_against_the_compose_specification() -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    errors = sorted(
        Draft202012Validator(schema).iter_errors(compose()), key=lambda e: list(e.path)
    )
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.path)) or '(top)'}: {e.message}" for e in errors
    )


def test_no_obsolete_version_key() -> None:
    assert "version" not in compose()


def test_expected_services() -> None:
    expected = {"kafka", "topics", "redis", *WORKERS, "demo-producer", "prometheus", "grafana"}
    assert expected <= set(services())


# --- the code's settings ----------------------------------------------------------------


def test_every_eligibility_variable_is_read_by_the_code() -> None:
    unknown = {
        f"{name}: {var}"
        for name, service in services().items()
        for var in raw_environment(service)
        if var.startswith("ELIGIBILITY_") and var not in code_variables()
    }
    assert not unknown, f"variables no code reads (typos?): {sorted(unknown)}"
    test_only = {
        f"{name}: {var}"
        for name, service in services().items()
        for var in raw_environment(service)
        if var in TEST_ONLY
    }
    assert not test_only


@pytest.mark.parametrize("worker", WORKERS)
def test_worker_settings(worker: str) -> None:
    env = environment(worker)
    settings = WorkerSettings.from_env(env)
    # Every setting explicit: the defaults are for a developer's machine (127.0.0.1).
    for name in (BROKERS_ENV, "ELIGIBILITY_REDIS_URL", "ELIGIBILITY_WEB_HOST",
                 "ELIGIBILITY_WEB_PORT", "ELIGIBILITY_STATE_PREFIX", "ELIGIBILITY_GROUP_ID"):
        assert env.get(name), f"{worker}: {name} is not set"
    assert settings.web_host == "0.0.0.0", "Prometheus scrapes the worker from another container"
    assert str(settings.web_port) in [str(port) for port in services()[worker].get("expose", [])]
    redis_url = urlsplit(settings.redis_url)
    assert redis_url.hostname == "redis", "the redis service"
    assert (redis_url.port or 6379) == 6379, "the redis container's port"
    # A real key, from the shell (never written here) or a file; never the development key.
    assert not settings.dev_mode
    raw = raw_environment(services()[worker])
    if raw.get(KEY_ENV) is not None:
        assert re.fullmatch(rf"\$\{{{KEY_ENV}:\?[^}}]+\}}", raw[KEY_ENV] or ""), (
            f"{KEY_ENV} must come from the shell as ${{{KEY_ENV}:?message}}"
        )
    else:
        key_file = env.get(KEY_FILE_ENV)
        assert key_file, f"{worker}: neither {KEY_ENV} nor {KEY_FILE_ENV}"
        secrets = services()[worker].get("secrets") or []
        assert key_file.startswith("/run/secrets/") and secrets, "the key file is a secret"


def test_the_workers_are_one_consumer_group_on_one_state() -> None:
    first = environment(WORKERS[0])
    for worker in WORKERS[1:]:
        assert environment(worker) == first, f"{worker} differs from {WORKERS[0]}"
        assert command(worker) == command(WORKERS[0])
    assert command(WORKERS[0])[0] == "worker"
    # Every worker gets partitions to work on.
    assert int(option("topics", "--partitions")) >= len(WORKERS)


def test_kafka_clients_agree_on_brokers_and_topics() -> None:
    clients = kafka_clients()
    assert {"topics", *WORKERS, "demo-producer"} <= set(clients)
    settings = {name: KafkaSettings.from_env(environment(name)) for name in clients}
    for name in clients:
        assert environment(name).get(BROKERS_ENV), f"{name}: {BROKERS_ENV} is not set"
    names = {
        name: (s.brokers, [s.topic(topic) for topic in ALL_TOPICS]) for name, s in settings.items()
    }
    assert len(set(map(repr, names.values()))) == 1, names
    # The brokers are the kafka service's listener for containers.
    advertised = environment("kafka")["KAFKA_ADVERTISED_LISTENERS"].split(",")
    addresses = {urlsplit(listener).netloc for listener in advertised}
    for broker in next(iter(settings.values())).brokers.split(","):
        assert broker.strip() in addresses, f"{broker} is not advertised by kafka"
    # The topic names are the contract's.
    specs = {
        yaml.safe_load(path.read_text(encoding="utf-8"))["topic"]
        for path in TOPICS_DIR.glob("*.yaml")
    }
    assert specs == set(ALL_TOPICS)


def test_the_topics_are_created_before_anything_uses_them() -> None:
    assert command("topics")[:2] == ["topics", "create"]
    assert int(option("topics", "--replication-factor")) == 1, "a single broker"
    assert depends_on("topics").get("kafka") == "service_healthy"
    for name in kafka_clients():
        if name != "topics":
            assert depends_on(name).get("topics") == "service_completed_successfully", name
    for worker in WORKERS:
        assert depends_on(worker).get("redis") == "service_healthy"
        assert depends_on(worker).get("kafka") == "service_healthy"


# --- start order, health, restarts, images, mounts --------------------------------------


def test_depends_on_conditions_can_be_met() -> None:
    for name in services():
        for dep, condition in depends_on(name).items():
            assert dep in services(), f"{name} depends on unknown {dep}"
            if condition == "service_healthy":
                assert has_healthcheck(dep), f"{name} waits for {dep} healthy: no healthcheck"
            elif condition == "service_completed_successfully":
                assert services()[dep].get("restart", "no") == "no", f"{dep} is a one-shot"
            else:
                assert condition == "service_started"


@pytest.mark.parametrize("name", MUST_BE_HEALTHY)
def test_health_checks(name: str) -> None:
    assert has_healthcheck(name), f"{name} has no healthcheck"


def test_worker_health_is_metrics() -> None:
    for worker in WORKERS:
        check = " ".join(services()[worker]["healthcheck"]["test"])
        assert "/metrics" in check and "ELIGIBILITY_WEB_PORT" in check
    assert "/metrics" in dockerfile_instructions()["HEALTHCHECK"][0]


def test_restart_policies() -> None:
    for worker in WORKERS:
        # A fenced or crashed worker exits hard (os._exit) and must come back by itself.
        assert services()[worker].get("restart") in ("unless-stopped", "always"), worker
    assert services()["topics"].get("restart", "no") == "no"


def _pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag != "latest" and any(c.isdigit() for c in tag)


def test_images_are_pinned() -> None:
    for name, service in services().items():
        if "build" in service:
            continue  # built here from the Dockerfile
        assert _pinned(service.get("image", "")), f"{name}: image {service.get('image')!r}"
    for base in dockerfile_instructions()["FROM"]:
        image = base.split()[0]
        assert _pinned(image), f"Dockerfile: FROM {image}"


def test_mounted_and_built_files_exist() -> None:
    declared = set(compose().get("volumes") or {})
    for name, service in services().items():
        for host, _ in bind_mounts(name):
            assert host.exists(), f"{name} mounts {host.relative_to(ROOT)}, which is missing"
            assert ROOT in host.parents, f"{name} mounts {host} from outside the repository"
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source")
            if isinstance(source, str) and not source.startswith((".", "/", "~")):
                assert source in declared, f"{name}: volume {source} is not declared"
        build = service.get("build")
        if build is not None:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile")
            assert (context / (dockerfile or "Dockerfile")).is_file()
        env_files = service.get("env_file") or []
        for env_file in [env_files] if isinstance(env_files, str) else env_files:
            path = env_file if isinstance(env_file, str) else env_file["path"]
            assert (ROOT / path).is_file(), f"{name}: env_file {path}"
    for kind in ("secrets", "configs"):
        for key, spec in (compose().get(kind) or {}).items():
            if "file" in spec:
                assert (ROOT / spec["file"]).is_file(), f"{kind}.{key}: {spec['file']}"


# --- Prometheus and Grafana --------------------------------------------------------------


def test_prometheus_scrapes_every_worker_at_its_web_port() -> None:
    config_path = host_path("prometheus", option("prometheus", "--config.file"))
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    for rule_file in config.get("rule_files") or []:
        assert (config_path.parent / rule_file).is_file(), f"rule file {rule_file}"
    jobs = [job for job in config["scrape_configs"] if job["job_name"] == PROMETHEUS_JOB]
    assert len(jobs) == 1
    targets = {
        target for static in jobs[0].get("static_configs", []) for target in static["targets"]
    }
    expected = {
        f"{worker}:{WorkerSettings.from_env(environment(worker)).web_port}" for worker in WORKERS
    }
    assert targets == expected, f"{PROMETHEUS_JOB} scrapes {targets}, the workers: {expected}"
    assert jobs[0].get("metrics_path", "/metrics") == "/metrics"


def test_grafana_is_provisioned_from_mounted_folders() -> None:
    provisioning = host_path("grafana", "/etc/grafana/provisioning")
    datasources = [
        source
        for path in sorted((provisioning / "datasources").glob("*.y*ml"))
        for source in yaml.safe_load(path.read_text(encoding="utf-8")).get("datasources", [])
    ]
    prometheus = [source for source in datasources if source.get("type") == "prometheus"]
    assert prometheus, "no Prometheus datasource"
    listen = option("prometheus", "--web.listen-address").rpartition(":")[2] or "9090"
    for source in prometheus:
        url = urlsplit(source["url"])
        assert (url.hostname, url.port) == ("prometheus", int(listen)), source["url"]
    providers = [
        provider
        for path in sorted((provisioning / "dashboards").glob("*.y*ml"))
        for provider in yaml.safe_load(path.read_text(encoding="utf-8")).get("providers", [])
    ]
    assert providers, "no dashboard provider"
    for provider in providers:
        folder = host_path("grafana", provider["options"]["path"])
        dashboards = sorted(folder.glob("*.json"))
        assert dashboards, f"no dashboards in {folder.relative_to(ROOT)}"
        for dashboard in dashboards:
            assert json.loads(dashboard.read_text(encoding="utf-8")).get("panels")


# --- the image --------------------------------------------------------------------------


def test_dockerfile() -> None:
    found = dockerfile_instructions()
    user = found["USER"][-1].split(":")[0]
    assert user not in ("root", "0"), "the worker runs as a non-root user"
    assert json.loads(found["ENTRYPOINT"][-1]) == ["eligibility"]
    assert json.loads(found["CMD"][-1]) == ["worker"]
    default_port = WorkerSettings.from_env({}).web_port
    assert found["EXPOSE"] == [str(default_port)]
    assert any("PYTHONUNBUFFERED=1" in env for env in found["ENV"])
    assert len(found["HEALTHCHECK"]) == 1


def test_dockerignore_keeps_the_context_to_what_is_copied() -> None:
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "an allow-list: everything else (.venv, .run, caches) stays out"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for copy in dockerfile_instructions()["COPY"]:
        args = copy.split()
        if any(arg.startswith("--from") for arg in args):
            continue
        for source in (arg for arg in args[:-1] if not arg.startswith("--")):
            top = source.split("/")[0]
            assert top in allowed, f"COPY {source}: excluded by .dockerignore"
    assert not allowed & {".venv", ".run", ".git", "tests"}


# --- docker compose itself ----------------------------------------------------------------


def _compose_plugin() -> str:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client")
    probe = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    return docker


def _run_config(
    docker: str, shell: Mapping[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """`docker compose config` with only `shell`'s variables (and no .env overrides);
    every profile on, so that profiled services are checked too."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ELIGIBILITY_", "COMPOSE_"))}
    env.update(shell)
    return subprocess.run(
        [docker, "compose", "-f", str(COMPOSE_FILE), "--profile", "*", "config", *args],
        capture_output=True, text=True, check=False, env=env, cwd=ROOT, timeout=60,
    )


def test_docker_compose_config_accepts_the_file() -> None:
    docker = _compose_plugin()
    result = _run_config(docker, SHELL_ENV, "--format", "json")
    assert result.returncode == 0, result.stderr
    model = json.loads(result.stdout)
    # Compose resolves the anchors, merge keys and variables as this test does.
    for name in filter_services():
        resolved = {k: v for k, v in (model["services"][name].get("environment") or {}).items()
                    if v is not None}
        assert resolved == environment(name), name


def test_docker_compose_refuses_to_run_without_a_pseudonym_key() -> None:
    docker = _compose_plugin()
    result = _run_config(docker, {}, "-q")
    assert result.returncode != 0
    assert KEY_ENV in result.stderr and "pseudonym key" in result.stderr

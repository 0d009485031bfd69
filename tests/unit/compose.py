"""Reading the compose file and the Dockerfile for the tests of the dev environment (no Docker engine here)."""

import re
from pathlib import Path

import click
import yaml

from cli import main

ROOT = Path(__file__).resolve().parents[2]


def load_compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def running(services):
    """The services `docker compose up` starts (not those behind a profile, like the CLI tool)."""
    return {name: s for name, s in services.items() if not s.get("profiles")}


def eda_services(services):
    return {name: s for name, s in services.items() if s.get("build")}


def worker_services(services):
    return {name: s for name, s in running(eda_services(services)).items() if s["command"][0] == "worker"}


def parse_command_line(args):
    """Parse an `eda` command line the way click does before running it: (command, its parameters).
    Unknown commands, unknown options and bad option values raise click's usage errors."""
    ctx = click.Context(main, info_name="eda")
    command, rest, name = main, list(args), "eda"
    while isinstance(command, click.Group):
        name, rest = rest[0], rest[1:]
        command = command.get_command(ctx, name)
        assert command is not None, f"eda has no command {name!r}"
    return command, command.make_context(name, rest, parent=ctx).params


def environment(service) -> dict:
    env = service.get("environment") or {}
    return dict(item.split("=", 1) for item in env) if isinstance(env, list) else {k: str(v) for k, v in env.items()}


def published(service) -> list[tuple[int, int]]:
    """(host port, container port) of each published port ("127.0.0.1:9101:9100")."""
    pairs = []
    for entry in service.get("ports", []):
        *host, container = str(entry).split(":")
        pairs.append((int(host[-1]), int(container.split("/")[0])))
    return pairs


def bind_mounts(service) -> list[tuple[Path, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts.append((ROOT / source, target))
    return mounts


def dockerfile() -> dict[str, list[str]]:
    """The Dockerfile's instructions: keyword -> the argument text of each, in order."""
    instructions: dict[str, list[str]] = {}
    for line in re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text()).splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            instructions.setdefault(keyword.upper(), []).append(rest.strip())
    return instructions


def mounted(services, service, target) -> Path:
    """The repository path that the compose file mounts at ``target`` in ``service``."""
    return next(source for source, t in bind_mounts(services[service]) if t == target)

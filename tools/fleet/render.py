"""Render a checked fleet to `DIR/docker-compose.yml`, `DIR/env/*.env` and, with monitoring,
the Prometheus and Grafana config under `DIR/monitoring/`.

Everything is rendered in memory first, checked (verify.py: the compose-spec schema, and every
value Compose parses), and written only when the whole fleet and its output are valid; files
whose content did not change are left alone, so output is byte-identical for the same input and
the same existing secrets.env. Templates print values quoted as JSON strings, which YAML reads as
double-quoted scalars: no user value can change the structure of the compose file.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import jinja2

from tools.fleet import atomic, certs, credentials, envfile, links, monitoring, verify
from tools.fleet.build import Fleet, build
from tools.fleet.inventory import Inventory
from tools.fleet.monitoring import Monitoring, make_monitoring
from tools.fleet.plan import Plan, make_plan
from tools.fleet.problems import FleetError, Problem

COMPOSE_FILE = "docker-compose.yml"


def _templates() -> Path:
    """The top-level `templates/`: reached through the package's `templates` symlink in a
    checkout, shipped as that folder's files by a wheel. A checkout whose git made no symlink
    (core.symlinks off) leaves a small file there, so the repository's folder is read directly."""
    here = Path(__file__).resolve().parent
    shipped = here / "templates"
    return shipped.resolve() if shipped.is_dir() else here.parents[1] / "templates"


TEMPLATES = _templates()


def _quote(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["q"] = _quote
    return env


def render_files(plan: Plan, mon: Monitoring | None = None) -> dict[str, str]:
    """Relative path -> content of every generated file except secrets.env."""
    env = environment()
    compose = env.get_template("docker-compose.yml.j2")
    files = {
        COMPOSE_FILE: compose.render(plan=plan, monitoring=mon),
        "env/backend.env": env.get_template("backend.env.j2").render(env=plan.backend_env),
    }
    worker_template = env.get_template("worker.env.j2")
    for worker in plan.workers:
        files[worker.env_file] = worker_template.render(worker=worker)
    if plan.links_conf:
        files[plan.links_conf] = links.RABBITMQ_CONF_TEXT
    host_compose = env.get_template("host-compose.yml.j2")
    for host in plan.remotes:
        files[f"{host.folder}/{COMPOSE_FILE}"] = host_compose.render(plan=plan, host=host)
        for worker in host.workers:
            files[f"{host.folder}/{worker.env_file}"] = worker_template.render(worker=worker)
    if mon is not None:
        grafana_env = env.get_template("grafana.env.j2")
        files[mon.grafana_env_file] = grafana_env.render(env=mon.grafana_env)
        for rel in monitoring.RENDERED:
            files[rel] = env.get_template(f"{rel}.j2").render(monitoring=mon)
        for rel in monitoring.COPIED:
            files[rel] = (TEMPLATES / rel).read_text(encoding="utf-8")
    return files


def prepare(fleet: Fleet) -> tuple[Plan, Monitoring | None, dict[str, str]]:
    """Render a checked fleet in memory and check the output; FleetError when it is invalid."""
    plan = links.spread(make_plan(fleet), fleet)
    mon = make_monitoring(fleet.spec, plan)
    files = render_files(plan, mon)
    problems = verify.check_files(files)
    if problems:
        raise FleetError(problems)
    return plan, mon, files


def _stale(out_dir: Path, files: dict[str, str]) -> list[str]:
    """Generated files this render no longer makes: other models' env files, monitoring's,
    the TLS listener's config. A host dropped from `hosts` keeps its folder (its key is there)."""
    folders = [
        "",
        *(f"{p.parent.relative_to(out_dir)}/" for p in sorted(out_dir.glob("hosts/*/env"))),
    ]
    candidates = [
        f"{folder}env/{p.name}"
        for folder in folders
        for p in sorted((out_dir / folder / "env").glob("worker-*.env"))
    ]
    candidates += [monitoring.GRAFANA_ENV_FILE, *monitoring.RENDERED, *monitoring.COPIED]
    candidates += [monitoring.API_KEY_FILE, links.RABBITMQ_CONF]
    return [rel for rel in candidates if rel not in files and (out_dir / rel).is_file()]


def secrets_text(values: dict[str, str], template: str = "secrets.env.j2") -> str:
    known = credentials.keys(monitoring=True)
    ordered = [k for k in known if k in values] + [k for k in values if k not in known]
    pairs = [(k, envfile.quote(values[k])) for k in ordered]
    return environment().get_template(template).render(env=pairs)


def _write(path: Path, content: str, mode: int = 0o644) -> bool:
    """Write `content` unless `path` already holds it; True when written."""
    return atomic.update(path, content.encode("utf-8"), mode)


def _mkdirs(out_dir: Path, rel: Path) -> None:
    """Create `out_dir/rel`; folders under monitoring/ are bind-mounted into containers whose
    non-root users (Prometheus' nobody, Grafana's 472) must list them whatever the umask."""
    (out_dir / rel).mkdir(parents=True, exist_ok=True)
    if rel.parts[:1] == ("monitoring",):
        for depth in range(1, len(rel.parts) + 1):
            (out_dir / Path(*rel.parts[:depth])).chmod(0o755)


def _scrape_key(values: dict[str, str]) -> tuple[str, Problem | None]:
    """The first key of API_KEYS, which Prometheus sends to the keyed /metrics."""
    keys = [k.strip() for k in values.get(credentials.API_KEYS, "").split(",") if k.strip()]
    if not keys:
        where = credentials.SECRETS_FILE
        return "", Problem(
            where, f"{credentials.API_KEYS} lists no key for Prometheus to scrape with"
        )
    return keys[0], None


@dataclass
class Rendered:
    """What a render did, for the one-line summary."""

    services: list[str]
    written: list[str]
    removed: list[str]
    warnings: list[Problem]
    secrets_created: bool
    monitoring_url: str | None
    # (folder, address, services) of each other host of a fleet over several hosts.
    hosts: list[tuple[str, str, list[str]]]


def render(fleet_path: Path, out_dir: Path, inventory: Inventory | None = None) -> Rendered:
    """Check, render and write; raise FleetError (having written nothing) on any problem."""
    fleet = build(fleet_path, inventory)
    plan, mon, files = prepare(fleet)
    for target in (out_dir, out_dir / "env"):
        if target.exists() and not target.is_dir():
            raise FleetError([Problem(str(target), "exists and is not a directory")])
    secrets = credentials.load_or_create(out_dir, mon is not None)
    problems = [p for p in secrets.problems if not p.warning]
    private = {}
    if secrets.write:
        private[credentials.SECRETS_FILE] = secrets_text(secrets.values)
        problems += verify.check_files(private)
    if mon is not None and mon.scrape_credentials_file:
        key, problem = _scrape_key(secrets.values)
        private[monitoring.API_KEY_FILE] = key
        problems += [problem] if problem else []
    for host in plan.remotes:
        # Only what a worker needs: no API key, no Grafana password on the other hosts.
        shared = {k: v for k, v in secrets.values.items() if k in credentials.WORKER_KEYS}
        private[f"{host.folder}/{host.secrets_file}"] = secrets_text(shared, "host-secrets.env.j2")
    problems += verify.check_files({k: v for k, v in private.items() if k.startswith("hosts/")})
    if plan.remotes:
        try:
            certs.openssl()
        except certs.CertError as e:
            problems.append(Problem(certs.TLS_DIR, str(e)))
    if problems:
        raise FleetError(problems)
    written, removed = [], []
    try:
        (out_dir / "env").mkdir(parents=True, exist_ok=True)
        if monitoring.API_KEY_FILE in private:
            # The scrape key is world-readable for Prometheus' nobody; its folder is not.
            (out_dir / "env").chmod(0o700)
        for rel, content in files.items():
            _mkdirs(out_dir, Path(rel).parent)
            if _write(out_dir / rel, content):
                written.append(rel)
        for rel, content in private.items():
            mode = 0o644 if rel == monitoring.API_KEY_FILE else 0o600
            if _write(out_dir / rel, content, mode):
                written.append(rel)
        for rel in _stale(out_dir, {**files, **private}):
            (out_dir / rel).unlink()
            removed.append(rel)
        if plan.remotes:
            head = fleet.spec.hosts[0].address
            hosts = [(h.name, h.address) for h in plan.remotes]
            scraper = mon is not None and bool(mon.remote_targets)
            written += certs.ensure(out_dir, plan.project, head, hosts, scraper)
    except certs.CertError as e:
        raise FleetError([Problem(certs.TLS_DIR, str(e))]) from e
    except OSError as e:
        where = e.filename or out_dir
        raise FleetError([Problem(str(where), f"cannot write: {e.strerror or e}")]) from e
    extra = ["prometheus", "grafana"] if mon else []
    known = {h.name for h in fleet.spec.hosts[1:]}
    left = sorted(
        p.name for p in (out_dir / "hosts").glob("*") if p.is_dir() and p.name not in known
    )
    warnings = [
        Problem(
            f"hosts/{name}", "is not in the spec any more; remove the folder (it holds a key)", True
        )
        for name in left
    ]
    return Rendered(
        services=["backend", "rabbitmq", "redis", *(w.service for w in plan.workers), *extra],
        written=written,
        removed=removed,
        warnings=fleet.warnings + secrets.problems + warnings,
        hosts=[(h.folder, h.address, [w.service for w in h.workers]) for h in plan.remotes],
        secrets_created=secrets.write,
        monitoring_url=mon.grafana_url if mon else None,
    )

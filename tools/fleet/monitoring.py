"""The `monitoring` profile: Prometheus scraping every backend's `/metrics` and every worker's,
evaluating the alert rules (`templates/monitoring/alerts.yml`), and Grafana.

Prometheus finds the backend replicas by DNS (`backend` resolves to each container) and scrapes
each one, since some metrics (`llm_wrap_jobs_waiting`) are per process. Workers are found the same
way, by service name, each replica a target (`WORKER_METRICS_PORT`; vLLM's engine metrics come
with them). Workers on the other hosts of a fleet over several are scraped at their host's
address over HTTPS (links.py), Prometheus showing a client certificate of the fleet's CA.
Grafana gets a provisioned datasource (by a fixed uid the dashboard names) and the dashboard;
its admin password is generated into secrets.env. Both services are in the compose profile
`monitoring`, so a plain `docker compose up` leaves them out.

When the backend requires keys and `/metrics` is not public, Prometheus scrapes with the first key
of `API_KEYS`: render writes it to `env/prometheus-api-key`, bind-mounted read-only as the scrape's
`credentials_file`. Prometheus runs as `nobody`, so the file is 0644, and `env/` is made 0700 so
that no other host user can reach it (a single-file bind mount needs no access to its folder).
"""

from __future__ import annotations

from dataclasses import dataclass

from tools.fleet import certs
from tools.fleet.plan import (
    API_PORT,
    HARDENING,
    WORKER_METRICS_PORT,
    Hardening,
    Healthcheck,
    Mount,
    Plan,
    env_pairs,
    escape,
    image_name,
    publish_host,
)
from tools.fleet.spec import FleetSpec

PROFILE = "monitoring"
VOLUMES = ("prometheus-data", "grafana-data")
PROMETHEUS_PORT = 9090
GRAFANA_PORT = 3000
GRAFANA_ENV_FILE = "env/grafana.env"
DATASOURCE_UID = "llm-wrap-prometheus"
DASHBOARD = "llm-wrap.json"
DASHBOARDS_TARGET = "/etc/grafana/dashboards"
# Generated config, at the same paths under DIR as under templates/: the `.j2` ones rendered, the
# dashboard copied as is (Grafana's `{{queue}}` legends would read as Jinja).
PROMETHEUS_CONFIG = "monitoring/prometheus.yml"
PROVISIONING = "monitoring/grafana/provisioning"
DASHBOARDS = "monitoring/grafana/dashboards"
RENDERED = (
    PROMETHEUS_CONFIG,
    f"{PROVISIONING}/datasources/prometheus.yml",
    f"{PROVISIONING}/dashboards/llm-wrap.yml",
)
# Alert rules (their `{{ $labels.queue }}` templates would read as Jinja too).
ALERTS = "monitoring/alerts.yml"
ALERTS_TARGET = "/etc/prometheus/alerts.yml"
COPIED = (f"{DASHBOARDS}/{DASHBOARD}", ALERTS)
# The key Prometheus scrapes with (see the module docstring), and where Prometheus reads it.
API_KEY_FILE = "env/prometheus-api-key"
API_KEY_TARGET = "/etc/prometheus/api-key"
# Prometheus' client certificate and the fleet CA, for the other hosts' worker pages.
TLS_TARGET = "/etc/prometheus/tls"


@dataclass(frozen=True)
class Service:
    """prometheus or grafana."""

    image: str
    ports: list[str]
    mounts: list[Mount]
    volume: str
    healthcheck: Healthcheck
    hardening: Hardening


@dataclass(frozen=True)
class Monitoring:
    profile: str
    volumes: tuple[str, ...]
    prometheus: Service
    prometheus_command: list[str]
    grafana: Service
    grafana_env_file: str
    grafana_env: list[tuple[str, str]]
    scrape_interval: str
    # The container path of the scrape key; None when /metrics needs none.
    scrape_credentials_file: str | None
    backend_service: str
    backend_port: int
    # The first host's worker services, each scraped at worker_port.
    worker_services: list[str]
    worker_port: int
    # (host name, [address:port...]) of the workers on the other hosts, scraped over TLS with
    # these files (container paths).
    remote_targets: list[tuple[str, list[str]]]
    remote_ca_file: str
    remote_cert_file: str
    remote_key_file: str
    datasource_uid: str
    prometheus_url: str
    dashboards_dir: str
    grafana_url: str


def _probe(port: int, path: str, start_period: str) -> Healthcheck:
    """Both images carry busybox `wget`, neither curl nor python."""
    return Healthcheck(
        ["CMD", "wget", "-q", "--spider", f"http://localhost:{port}{path}"],
        "15s",
        "5s",
        3,
        start_period,
    )


def scrapes_with_key(spec: FleetSpec) -> bool:
    """Whether Prometheus needs the key: keys required and `/metrics` not left public."""
    backend = spec.backend
    return spec.monitoring.enabled and (
        backend.require_api_keys and "metrics" not in backend.public_endpoints
    )


def make_monitoring(spec: FleetSpec, plan: Plan) -> Monitoring | None:
    """What the templates print for the profile; None when `monitoring.enabled` is false.
    `plan`: the first host's (after links.spread), whose workers Prometheus can reach."""
    settings = spec.monitoring
    if not settings.enabled:
        return None
    host = publish_host(settings.host)
    keyed = scrapes_with_key(spec)
    prometheus_mounts = [
        Mount(f"./{PROMETHEUS_CONFIG}", "/etc/prometheus/prometheus.yml"),
        Mount(f"./{ALERTS}", ALERTS_TARGET),
    ]
    if keyed:
        prometheus_mounts.append(Mount(f"./{API_KEY_FILE}", API_KEY_TARGET))
    remote = [(h.name, h.metrics_targets) for h in plan.remotes if h.metrics_targets]
    if remote:
        prometheus_mounts += [
            Mount(f"./{certs.TLS_DIR}/{certs.CA_CERT}", f"{TLS_TARGET}/{certs.CA_CERT}"),
            *(
                Mount(f"./{certs.SCRAPER_DIR}/{name}", f"{TLS_TARGET}/{name}")
                for name in (certs.CLIENT_CERT, certs.CLIENT_KEY)
            ),
        ]
    return Monitoring(
        profile=PROFILE,
        volumes=VOLUMES,
        prometheus=Service(
            image=escape(image_name(spec, spec.images.prometheus)),
            ports=[f"{host}:{settings.prometheus_port}:{PROMETHEUS_PORT}"],
            mounts=prometheus_mounts,
            volume="prometheus-data:/prometheus",
            healthcheck=_probe(PROMETHEUS_PORT, "/-/ready", "20s"),
            hardening=HARDENING["prometheus"],
        ),
        prometheus_command=[
            "--config.file=/etc/prometheus/prometheus.yml",
            "--storage.tsdb.path=/prometheus",
            f"--storage.tsdb.retention.time={settings.retention}",
        ],
        grafana=Service(
            image=escape(image_name(spec, spec.images.grafana)),
            ports=[f"{host}:{settings.grafana_port}:{GRAFANA_PORT}"],
            mounts=[
                Mount(f"./{PROVISIONING}", "/etc/grafana/provisioning"),
                Mount(f"./{DASHBOARDS}", DASHBOARDS_TARGET),
            ],
            volume="grafana-data:/var/lib/grafana",
            healthcheck=_probe(GRAFANA_PORT, "/api/health", "30s"),
            hardening=HARDENING["grafana"],
        ),
        grafana_env_file=GRAFANA_ENV_FILE,
        grafana_env=env_pairs(
            [
                ("GF_SECURITY_ADMIN_USER", "admin"),
                ("GF_USERS_ALLOW_SIGN_UP", "false"),
                ("GF_AUTH_ANONYMOUS_ENABLED", "false"),
                ("GF_ANALYTICS_REPORTING_ENABLED", "false"),
                ("GF_ANALYTICS_CHECK_FOR_UPDATES", "false"),
                ("GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES", "false"),
                ("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH", f"{DASHBOARDS_TARGET}/{DASHBOARD}"),
            ]
        ),
        scrape_interval=settings.scrape_interval,
        scrape_credentials_file=API_KEY_TARGET if keyed else None,
        backend_service="backend",
        backend_port=API_PORT,
        worker_services=[w.service for w in plan.workers],
        worker_port=WORKER_METRICS_PORT,
        remote_targets=remote,
        remote_ca_file=f"{TLS_TARGET}/{certs.CA_CERT}",
        remote_cert_file=f"{TLS_TARGET}/{certs.CLIENT_CERT}",
        remote_key_file=f"{TLS_TARGET}/{certs.CLIENT_KEY}",
        datasource_uid=DATASOURCE_UID,
        prometheus_url=f"http://prometheus:{PROMETHEUS_PORT}",
        dashboards_dir=DASHBOARDS_TARGET,
        grafana_url=f"http://{host}:{settings.grafana_port}",
    )

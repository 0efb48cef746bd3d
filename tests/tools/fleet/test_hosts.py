"""A fleet over several hosts: what render writes for each, and the certificates it makes.

The live proof (two compose projects, the second reaching the first over TLS only) is
tests/smoke/test_multi_host.py; the output's exact text is the `hosts` golden case.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from tools.fleet import certs, credentials

FLEET = """\
hosts:
  - {name: head, address: 10.0.0.10}
  - {name: gpu-b, address: gpu-b.internal}
models:
  - {name: near, backend: echo}
  - {name: big, path: /m/big, gpus: [0, 1], host: gpu-b}
  - {name: far, backend: echo, host: gpu-b}
"""


def openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True)


def san(cert: Path) -> str:
    return openssl("x509", "-in", cert, "-noout", "-ext", "subjectAltName").stdout


@pytest.fixture
def rendered(cli, write_fleet, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    run = cli("render", write_fleet(FLEET), "--out", out)
    assert run.code == 0, run.err
    assert (
        f"rendered {out}/hosts/gpu-b/docker-compose.yml: 2 services (worker-big, worker-far)"
        in run.out
    )
    return out


def test_each_other_host_gets_its_workers_only(rendered: Path, load_compose, read_env) -> None:
    head = load_compose(rendered)
    assert sorted(head["services"]) == ["backend", "rabbitmq", "redis", "worker-near"]
    far = load_compose(rendered / "hosts" / "gpu-b")
    assert sorted(far["services"]) == ["tls-files", "worker-big", "worker-far"]
    assert far["name"] == "llm-wrap-gpu-b"
    worker = far["services"]["worker-big"]
    assert worker["depends_on"] == {"tls-files": {"condition": "service_completed_successfully"}}
    devices = worker["deploy"]["resources"]["reservations"]["devices"][0]
    assert devices["device_ids"] == ["0", "1"]
    env = read_env(rendered / "hosts" / "gpu-b" / "env" / "worker-far.env")
    assert (env["RABBIT_MQ_HOST"], env["RABBIT_MQ_PORT"]) == ("10.0.0.10", "5671")
    assert (env["REDIS_HOST"], env["REDIS_PORT"]) == ("10.0.0.10", "6380")
    assert env["RABBIT_MQ_TLS"] == env["REDIS_TLS"] == "true"
    assert env["TLS_KEY_FILE"] == "/run/llm-wrap/tls/client-key.pem"
    near = read_env(rendered / "env" / "worker-near.env")
    assert near["RABBIT_MQ_HOST"] == "rabbitmq" and "RABBIT_MQ_TLS" not in near


@pytest.fixture
def monitored(cli, write_fleet, tmp_path: Path) -> Path:
    out = tmp_path / "monitored"
    run = cli("render", write_fleet(FLEET + "monitoring: {enabled: true}\n"), "--out", out)
    assert run.code == 0, run.err
    return out


def test_prometheus_scrapes_every_worker_the_remote_ones_over_tls(
    monitored: Path, load_compose, read_env
) -> None:
    """The first host's workers by DNS on its network; the others at their host's address,
    each on its own published port, over HTTPS with Prometheus' client certificate."""
    config = yaml.safe_load((monitored / "monitoring" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert [c["names"] for c in jobs["llm-wrap-workers"]["dns_sd_configs"]] == [["worker-near"]]
    remote = jobs["llm-wrap-workers-remote"]
    assert remote["scheme"] == "https"
    assert remote["static_configs"] == [
        {"targets": ["gpu-b.internal:9400", "gpu-b.internal:9401"], "labels": {"host": "gpu-b"}}
    ]
    assert remote["tls_config"] == {
        "ca_file": "/etc/prometheus/tls/ca.pem",
        "cert_file": "/etc/prometheus/tls/client.pem",
        "key_file": "/etc/prometheus/tls/client-key.pem",
    }
    far = load_compose(monitored / "hosts" / "gpu-b")["services"]
    assert far["worker-big"]["ports"] == ["0.0.0.0:9400:9400"]
    assert far["worker-far"]["ports"] == ["0.0.0.0:9401:9400"]
    env = read_env(monitored / "hosts" / "gpu-b" / "env" / "worker-far.env")
    assert env["WORKER_METRICS_TLS"] == "true" and env["WORKER_METRICS_PORT"] == "9400"
    assert "WORKER_METRICS_TLS" not in read_env(monitored / "env" / "worker-near.env")
    # Prometheus gets its certificate, its key and the CA, nothing else of tls/.
    mounts = {
        v["source"]: v["target"]
        for v in load_compose(monitored)["services"]["prometheus"]["volumes"]
        if isinstance(v, dict) and v["source"].startswith("./tls")
    }
    assert mounts == {
        "./tls/ca.pem": "/etc/prometheus/tls/ca.pem",
        "./tls/prometheus/client.pem": "/etc/prometheus/tls/client.pem",
        "./tls/prometheus/client-key.pem": "/etc/prometheus/tls/client-key.pem",
    }


def test_the_remote_pages_certificates(monitored: Path) -> None:
    """A host's certificate names its address and serves (its workers' pages) as well as it
    connects; Prometheus' is a client's, readable by its user `nobody`, kept on the first host."""
    ca = monitored / "tls" / "ca.pem"
    host = monitored / "hosts" / "gpu-b" / "tls" / "client.pem"
    assert "DNS:gpu-b.internal" in san(host)
    purpose = openssl("x509", "-in", host, "-noout", "-ext", "extendedKeyUsage").stdout
    assert "TLS Web Server Authentication" in purpose and "TLS Web Client Authentication" in purpose
    scraper = monitored / "tls" / "prometheus"
    assert openssl("verify", "-CAfile", ca, scraper / "client.pem").returncode == 0
    assert stat.S_IMODE((scraper / "client-key.pem").stat().st_mode) == 0o644
    assert stat.S_IMODE(scraper.stat().st_mode) == stat.S_IMODE(ca.parent.stat().st_mode) == 0o700
    assert not list((monitored / "hosts").rglob("prometheus*"))


def test_promtool_accepts_the_rendered_config(monitored: Path, load_compose, tmp_path) -> None:
    """Prometheus' own checker, with the container paths pointed at the files mounted there."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool missing: bash tools/setup/servers.sh installs it")
    text = (monitored / "monitoring" / "prometheus.yml").read_text()
    for volume in load_compose(monitored)["services"]["prometheus"]["volumes"]:
        if isinstance(volume, dict) and volume["type"] == "bind":
            text = text.replace(volume["target"], str(monitored / volume["source"]))
    (tmp_path / "prometheus.yml").write_text(text)
    checked = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_without_monitoring_no_page_is_published(rendered: Path, load_compose, read_env) -> None:
    far = load_compose(rendered / "hosts" / "gpu-b")["services"]
    assert "ports" not in far["worker-far"]
    assert "WORKER_METRICS_TLS" not in read_env(
        rendered / "hosts" / "gpu-b" / "env" / "worker-far.env"
    )
    assert not (rendered / "tls" / "prometheus").exists()


def test_metrics_ports_past_65535_are_refused(cli, write_fleet, tmp_path: Path) -> None:
    spec = FLEET + "monitoring: {enabled: true}\nlinks: {metrics_port: 65535}\n"
    run = cli("render", write_fleet(spec), "--out", tmp_path / "out")
    assert run.code == 2
    assert (
        "links.metrics_port: the 2 workers of 'gpu-b' publish their metrics on 65535..65536, "
        "past 65535" in run.lines
    ), run.lines


def test_the_first_host_publishes_tls_ports_only(rendered: Path, load_compose) -> None:
    services = load_compose(rendered)["services"]
    assert services["rabbitmq"]["ports"] == ["0.0.0.0:5671:5671"]
    assert services["redis"]["ports"] == ["0.0.0.0:6380:6380"]
    assert "--tls-auth-clients yes" in services["redis"]["command"][2]
    conf = (rendered / "rabbitmq" / "20-tls.conf").read_text()
    assert "ssl_options.fail_if_no_peer_cert = true" in conf


def test_every_compose_file_is_valid(rendered: Path, compose_schema, compose_config) -> None:
    for folder in (rendered, rendered / "hosts" / "gpu-b"):
        compose_schema.validate(yaml.safe_load((folder / "docker-compose.yml").read_text()))
        done = compose_config(folder, "-q")
        assert done.returncode == 0, done.stderr


def test_other_hosts_get_the_broker_credentials_and_no_api_key(rendered: Path, read_env) -> None:
    head = read_env(rendered / "env" / "secrets.env")
    far_file = rendered / "hosts" / "gpu-b" / "env" / "secrets.env"
    far = read_env(far_file)
    assert list(far) == list(credentials.WORKER_KEYS)
    assert all(far[k] == head[k] for k in far)
    assert stat.S_IMODE(far_file.stat().st_mode) == 0o600


def test_certificates_chain_to_the_fleet_ca(rendered: Path) -> None:
    ca = rendered / "tls" / "ca.pem"
    server = rendered / "tls" / "server" / "server.pem"
    client = rendered / "hosts" / "gpu-b" / "tls" / "client.pem"
    for cert in (server, client):
        assert openssl("verify", "-CAfile", ca, cert).returncode == 0
    assert {"IP Address:10.0.0.10", "DNS:rabbitmq", "DNS:redis"} <= {
        part.strip() for part in san(server).replace("\n", ",").split(",")
    }
    purpose = openssl("x509", "-in", client, "-noout", "-ext", "extendedKeyUsage").stdout
    assert "TLS Web Client Authentication" in purpose
    keys = [rendered / "tls" / "ca-key.pem", *rendered.rglob("*-key.pem")]
    assert all(stat.S_IMODE(k.stat().st_mode) == 0o600 for k in keys)
    # The CA key stays out of every mounted folder.
    mounted = [rendered / "tls" / "server", rendered / "hosts" / "gpu-b" / "tls"]
    assert not any((folder / certs.CA_KEY).exists() for folder in mounted)


def test_render_again_keeps_certificates_and_renews_what_changed(
    cli, write_fleet, rendered: Path
) -> None:
    files = {p: p.read_bytes() for p in rendered.rglob("*.pem")}
    again = cli("render", write_fleet(FLEET), "--out", rendered)
    assert again.code == 0 and "0 files written" in again.out, again.out
    assert {p: p.read_bytes() for p in rendered.rglob("*.pem")} == files

    moved = cli(
        "render", write_fleet(FLEET.replace("10.0.0.10", "head.example.org")), "--out", rendered
    )
    assert moved.code == 0, moved.err
    server = rendered / "tls" / "server" / "server.pem"
    assert "DNS:head.example.org" in san(server)
    client = rendered / "hosts" / "gpu-b" / "tls" / "client.pem"
    assert client.read_bytes() == files[client]
    assert (rendered / "tls" / "ca.pem").read_bytes() == files[rendered / "tls" / "ca.pem"]


def test_a_deleted_client_key_is_issued_again(cli, write_fleet, rendered: Path) -> None:
    folder = rendered / "hosts" / "gpu-b" / "tls"
    old = (folder / "client.pem").read_bytes()
    (folder / "client-key.pem").unlink()
    (folder / "client.pem").unlink()
    assert cli("render", write_fleet(FLEET), "--out", rendered).code == 0
    assert (folder / "client.pem").read_bytes() != old
    assert (
        openssl("verify", "-CAfile", rendered / "tls" / "ca.pem", folder / "client.pem").returncode
        == 0
    )


def test_a_host_left_out_keeps_its_folder_with_a_warning(cli, write_fleet, rendered: Path) -> None:
    one_host = "\n".join(line for line in FLEET.splitlines() if "gpu-b" not in line)
    run = cli("render", write_fleet(one_host), "--out", rendered)
    assert run.code == 0, run.err
    assert "warning: hosts/gpu-b: is not in the spec any more" in run.err
    assert (rendered / "hosts" / "gpu-b" / "tls" / "client-key.pem").exists()
    # The worker env files of models no longer on it are generated files: they go.
    assert not (rendered / "hosts" / "gpu-b" / "env" / "worker-far.env").exists()


def test_without_openssl_nothing_is_written(cli, write_fleet, tmp_path, monkeypatch) -> None:
    spec = write_fleet(FLEET)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = tmp_path / "out"
    run = cli("render", spec, "--out", out)
    assert (run.code, run.lines) == (
        2,
        ["tls: the openssl command is missing (apt-get install openssl)"],
    )
    assert not out.exists()

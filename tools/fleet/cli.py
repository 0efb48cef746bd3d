"""`python -m tools.fleet`: render, validate, inventory, docs, schema.

Bad input never shows a traceback: every problem is one line on stderr and the exit status is 2.
An unexpected error (a bug) is one line too, with the same status, and nothing is written.
Output goes through sys.stdout/sys.stderr (the project bans print).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tools.fleet import docs, inventory
from tools.fleet.build import build
from tools.fleet.problems import FleetError, Problem
from tools.fleet.render import COMPOSE_FILE, prepare, render

EXIT_PROBLEMS = 2


def _fail(lines: Sequence[object]) -> int:
    sys.stderr.write("".join(f"{line}\n" for line in lines))
    return EXIT_PROBLEMS


def _warn(problems: Sequence[Problem]) -> None:
    sys.stderr.write("".join(f"{p}\n" for p in problems))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _inventory(args: argparse.Namespace) -> inventory.Inventory | None:
    if args.inventory is None:
        return None
    stdin = sys.stdin.read() if args.inventory == "-" else None
    return inventory.read_file(args.inventory, stdin)


def _render(args: argparse.Namespace) -> int:
    result = render(Path(args.fleet), Path(args.out), _inventory(args))
    _warn(result.warnings)
    out = Path(args.out)
    sys.stdout.write(
        f"rendered {out / COMPOSE_FILE}: {len(result.services)} services "
        f"({', '.join(result.services)}); {_count(len(result.written), 'file')} written\n"
    )
    for folder, address, services in result.hosts:
        sys.stdout.write(
            f"rendered {out / folder / COMPOSE_FILE}: {_count(len(services), 'service')} "
            f"({', '.join(services)}); copy {out / folder} to {address} and run "
            "`docker compose up -d` there\n"
        )
    if result.removed:
        sys.stdout.write(f"removed stale {', '.join(str(out / r) for r in result.removed)}\n")
    if result.secrets_created:
        sys.stdout.write(
            f"wrote credentials and the API key (API_KEYS) to {out / 'env/secrets.env'} "
            "(mode 0600; keep it out of git, later renders reuse it)\n"
        )
    if result.monitoring_url:
        sys.stdout.write(
            f"monitoring: docker compose -f {out / COMPOSE_FILE} --profile monitoring up -d; "
            f"Grafana at {result.monitoring_url} (user admin, password "
            f"GF_SECURITY_ADMIN_PASSWORD in {out / 'env/secrets.env'})\n"
        )
    return 0


def _validate(args: argparse.Namespace) -> int:
    fleet = build(Path(args.fleet), _inventory(args))
    prepare(fleet)  # what render would write must be valid too
    _warn(fleet.warnings)
    spec = fleet.spec
    gpus = sum(len(d) for d in fleet.devices)
    sys.stdout.write(
        f"{args.fleet}: valid, {_count(len(spec.models), 'model')} on {_count(gpus, 'GPU')}\n"
    )
    width = max(len(m.name) for m in spec.models) + len("worker-")
    head = spec.hosts[0].name if spec.hosts else ""
    for model, devices in zip(spec.models, fleet.devices, strict=True):
        where = ",".join(map(str, devices)) if devices else "CPU"
        if head:
            where = f"{model.host or head}: {where}"
        auto = " (auto)" if model.gpus == "auto" else ""
        sys.stdout.write(
            f"  {'worker-' + model.name:<{width}}  {model.backend:<12} {where}{auto}\n"
        )
    return 0


def _inventory_cmd(args: argparse.Namespace) -> int:
    found = inventory.query()
    sys.stdout.write("".join(f"{gpu.csv_line()}\n" for gpu in found.gpus))
    return 0


def _docs(args: argparse.Namespace) -> int:
    sys.stdout.write(docs.reference())
    return 0


def _schema(args: argparse.Namespace) -> int:
    sys.stdout.write(docs.json_schema())
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m tools.fleet",
        description="Generate a docker-compose deployment from a GPU fleet spec (FLEET.yaml).",
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    inventory_help = (
        "saved output of `python -m tools.fleet inventory` (nvidia-smi csv); '-' reads stdin"
    )
    cmd = sub.add_parser("render", help="write DIR/docker-compose.yml and DIR/env/*.env")
    cmd.add_argument("fleet", metavar="FLEET.yaml")
    cmd.add_argument("--out", required=True, metavar="DIR", help="output directory")
    cmd.add_argument("--inventory", metavar="FILE", help=inventory_help)
    cmd.set_defaults(run=_render)
    cmd = sub.add_parser("validate", help="check the spec; write nothing")
    cmd.add_argument("fleet", metavar="FLEET.yaml")
    cmd.add_argument("--inventory", metavar="FILE", help=inventory_help)
    cmd.set_defaults(run=_validate)
    cmd = sub.add_parser("inventory", help="list this host's GPUs (nvidia-smi) as csv")
    cmd.set_defaults(run=_inventory_cmd)
    cmd = sub.add_parser("docs", help="print the spec reference (Markdown)")
    cmd.set_defaults(run=_docs)
    cmd = sub.add_parser("schema", help="print the spec's JSON schema")
    cmd.set_defaults(run=_schema)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.run(args))
    except FleetError as e:
        return _fail(e.problems)
    except inventory.InventoryError as e:
        return _fail([e])
    except BrokenPipeError:
        return 1
    except Exception as e:  # noqa: BLE001 - the promise is one line, never a traceback
        what = f"internal error (please report it with the spec): {type(e).__name__}: {e}"
        return _fail([Problem("", what)])

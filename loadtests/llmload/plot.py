"""The sweep's figure: throughput and latencies against the number of users, one PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.ticker import FuncFormatter, SymmetricalLogLocator  # noqa: E402

from llmload.report import ALL, Row  # noqa: E402

Step = tuple[int, list[Row]]  # users, the summary rows of that step


def _series(steps: Sequence[Step], endpoint: str, attr: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for users, rows in steps:
        for row in rows:
            value = getattr(row, attr)
            if row.endpoint == endpoint and value is not None:
                xs.append(users)
                ys.append(float(value))
    return xs, ys


def _endpoints(steps: Sequence[Step]) -> list[str]:
    names = sorted({row.endpoint for _, rows in steps for row in rows} - {ALL})
    return names


def _axis(ax: Axes, users: list[int], title: str, ylabel: str, ylog: bool = True) -> None:
    """Users on a log-2 axis; times on a log axis (symlog: a 0 ms queue wait stays visible)."""
    if ylog:
        ax.set_yscale("symlog", linthresh=1.0)
        ax.yaxis.set_major_locator(SymmetricalLogLocator(base=10, linthresh=1.0, subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xscale("log", base=2)
    ax.set_xlim(users[0] / 1.4, users[-1] * 1.4)
    ax.set_xticks(users, [str(u) for u in users])
    ax.minorticks_off()
    ax.set_xlabel("users (concurrent requests, no think time)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)


def plot(steps: Sequence[Step], path: Path, title: str) -> None:
    users = [u for u, _ in steps]
    endpoints = _endpoints(steps)
    colours = {name: f"C{i}" for i, name in enumerate(endpoints)}
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    fig.suptitle(title, fontsize=11)

    ax = axes[0][0]
    ax.plot(*_series(steps, ALL, "rps"), "o-", color="C0", label="requests/s")
    _axis(ax, users, "Throughput", "requests/s", ylog=False)
    twin = ax.twinx()
    twin.plot(*_series(steps, ALL, "out_tok_s"), "s--", color="C3", label="output tokens/s")
    twin.set_ylabel("output tokens/s")
    lines = ax.get_lines() + twin.get_lines()
    ax.legend(lines, [str(line.get_label()) for line in lines], fontsize=8, loc="upper left")

    ax = axes[0][1]
    for name in endpoints:
        ax.plot(*_series(steps, name, "e2e_p50"), "o-", color=colours[name], label=f"{name} p50")
        ax.plot(*_series(steps, name, "e2e_p99"), "v--", color=colours[name], label=f"{name} p99")
    _axis(ax, users, "End-to-end latency per request", "ms (log)")
    ax.legend(fontsize=7)

    ax = axes[1][0]
    streamed = [n for n in endpoints if _series(steps, n, "ttft_p50")[0]]
    for name in streamed:
        c = colours[name]
        ax.plot(*_series(steps, name, "ttft_p50"), "o-", color=c, label=f"TTFT p50 {name}")
        ax.plot(*_series(steps, name, "ttft_p99"), "v--", color=c, label=f"TTFT p99 {name}")
        ax.plot(*_series(steps, name, "itl_p50"), "x:", color="C7", label=f"ITL p50 {name}")
    _axis(ax, users, "Streamed: time to first token, inter-token latency", "ms (log)")
    if streamed:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no streamed requests", ha="center", transform=ax.transAxes)

    ax = axes[1][1]
    for name in endpoints:
        c = colours[name]
        ax.plot(*_series(steps, name, "queue_p50"), "o-", color=c, label=f"queue p50 {name}")
        ax.plot(*_series(steps, name, "gen_p50"), "x:", color=c, label=f"generation p50 {name}")
    _axis(ax, users, "Where the time goes: queue wait vs generation (job times)", "ms (log)")
    ax.legend(fontsize=7)

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

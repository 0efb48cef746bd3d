"""A closed-loop HTTP load generator for benchmarks whose requests take more than one exchange
(submit, then poll), so wrk's one-request scripts cannot drive them.

`run_load` runs N users in one asyncio loop (run it under uvloop), each on its own kept-alive
HTTP/1.1 connection, looping request -> answer for a fixed time; what is in flight at the end is
waited for and counted. A logical request (`Ask`) is answered when it returns; `BadAnswer`, a
dropped connection or the timeout make it an error, counted by kind. The client is plain asyncio
streams with the request written whole and the response read by Content-Length (what uvicorn
sends for a JSON body): 0.03-0.05 ms of client CPU per request on the reference VM, where an
httpx.AsyncClient took 0.5 ms at c=1 and 4.5 ms with 64 pooled connections. The HTTP floor's
rate measured with it is the client's ceiling.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


class BadAnswer(Exception):
    """A request that got an answer, but not its own (or none): counted as an error by kind."""


class Conn:
    """One kept-alive HTTP/1.1 connection to 127.0.0.1; responses read by Content-Length (what
    uvicorn sends for a JSON body). Reopened on the next request after any failure."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def post(self, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(
            b"POST %s HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (path.encode(), len(body), body)
        )
        head = (await self.reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
        status, length, close = int(head[0].split(b" ", 2)[1]), -1, False
        for line in head[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection":
                close = value.strip().lower() == b"close"
        if length < 0:
            raise BadAnswer("no content-length")
        data = await self.reader.readexactly(length)
        if close:
            self.close()
        return status, data


Ask = Callable[[Conn, int], Awaitable[int]]  # one logical request; returns HTTP exchanges made


@dataclass
class Run:
    """One side's run: answered requests, their latencies (s), errors by kind, HTTP exchanges,
    wall seconds, the client's own CPU seconds and the servers' (the side's processes, RabbitMQ
    and Redis)."""

    answered: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    exchanges: int = 0
    secs: float = 0.0
    client_cpu: float = 0.0
    server_cpu: float = 0.0


async def run_load(ask: Ask, port: int, users: int, duration: float, timeout: float) -> Run:
    """`users` closed-loop users for `duration` s (at least one request each); what is in
    flight at the end is waited for and counted."""
    run = Run()
    numbers = itertools.count(random.randrange(1, 10**9))
    conns = [Conn(port) for _ in range(users)]
    await asyncio.gather(*(c.open() for c in conns))

    async def user(conn: Conn) -> None:
        while True:
            n, start = next(numbers), time.perf_counter()
            try:
                async with asyncio.timeout(timeout):
                    made = await ask(conn, n)  # not `+= await`: the sum is read before
                run.exchanges += made
                run.latencies.append(time.perf_counter() - start)
                run.answered += 1
            except BadAnswer as e:
                run.errors[str(e)] += 1
            except TimeoutError:
                run.errors["timeout"] += 1
                conn.close()
            except (OSError, EOFError, asyncio.IncompleteReadError, ValueError) as e:
                run.errors[type(e).__name__] += 1
                conn.close()
            except (LookupError, TypeError, AttributeError) as e:  # an answer of another shape
                run.errors[f"malformed answer ({type(e).__name__})"] += 1
            if time.perf_counter() >= deadline:
                return

    cpu, start = time.process_time(), time.perf_counter()
    deadline = start + duration
    await asyncio.gather(*(user(c) for c in conns))
    run.secs, run.client_cpu = time.perf_counter() - start, time.process_time() - cpu
    for c in conns:
        c.close()
    return run


def pct(latencies: list[float], p: float) -> float:
    """The p-th percentile in ms (nearest rank)."""
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] * 1000 if ordered else 0.0


@dataclass
class Summary:
    """A side's medians over rounds; errors and exchanges summed."""

    rps: float
    p50: float
    p99: float
    errors: Counter[str]
    exchanges_per_answer: float
    client_cpu_ms: float
    server_cpu_ms: float

    @classmethod
    def of(cls, runs: list[Run]) -> Summary:
        answered = sum(r.answered for r in runs)
        return cls(
            rps=statistics.median(r.answered / r.secs for r in runs),
            p50=statistics.median(pct(r.latencies, 50) for r in runs),
            p99=statistics.median(pct(r.latencies, 99) for r in runs),
            errors=sum((r.errors for r in runs), Counter()),
            exchanges_per_answer=sum(r.exchanges for r in runs) / max(answered, 1),
            client_cpu_ms=sum(r.client_cpu for r in runs) * 1000 / max(answered, 1),
            server_cpu_ms=sum(r.server_cpu for r in runs) * 1000 / max(answered, 1),
        )

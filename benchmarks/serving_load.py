"""A lean HTTP/1.1 load generator for bench_serving: raw asyncio keep-alive connections on uvloop.

An httpx client spends more CPU per request than the server's whole batched answer, so on 2 cores
it would measure itself. Here each of `clients` connections sends a GET, reads the head up to the
blank line and exactly Content-Length bytes of body, and repeats: closed loop (as fast as answers
come) or open loop (each connection on its own fixed schedule; latency counts from the scheduled
send time, so a slow server cannot hide its queue). A non-200, a body that is not the expected
JSON, or a broken connection is an error. It runs in its own process (`run_load`).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import time
from collections.abc import Callable

import numpy as np

Path = Callable[[np.random.Generator], str]


def make_path(kind: str, n_users: int) -> Path:
    """'users': random users' top 10; 'health': the trivial endpoint (the client+server ceiling)."""
    if kind == "health":
        return lambda _: "/health"
    return lambda rng: f"/users/{int(rng.integers(1, n_users + 1))}/recommendations?n=10"


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    at = lower.find(b"content-length:")
    if at < 0:
        raise ValueError("response without content-length")
    length = int(lower[at + 15 : lower.index(b"\r\n", at)])
    return status, await reader.readexactly(length)


def _check(path: str, body: bytes) -> str | None:
    """Every 50th answer is parsed: recommendations must hold 10 items."""
    doc = json.loads(body)
    if path.startswith("/users/") and len(doc["items"]) != 10:
        return f"{path}: {len(doc['items'])} items"
    return None


async def _client(host: str, port: int, worker: int, path: Path, stop_at: float, interval: float,
                  latencies: list[float], errors: list[str]) -> None:
    rng = np.random.default_rng(worker)
    reader, writer = await asyncio.open_connection(host, port)
    next_at = time.perf_counter() + rng.random() * interval
    count = 0
    try:
        while True:
            if interval:
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                start, next_at = next_at, next_at + interval
            else:
                start = time.perf_counter()
            if start >= stop_at:
                return
            target = path(rng)
            try:
                status, body = await _get(reader, writer, f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                count += 1
                problem = f"{target}: {status}" if status != 200 else (_check(target, body) if count % 50 == 0 else None)
                if problem:
                    errors.append(problem)
            except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
                errors.append(f"{target}: {exc!r}")
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
            latencies.append(time.perf_counter() - start)
    finally:
        writer.close()


async def _load(host: str, port: int, kind: str, n_users: int, clients: int, seconds: float, rate: float | None,
                warmup: float) -> dict:
    path = make_path(kind, n_users)
    for phase_seconds, keep in ((warmup, False), (seconds, True)):
        latencies: list[float] = []
        errors: list[str] = []
        interval = clients / rate if rate else 0.0
        t = time.perf_counter()
        await asyncio.gather(*(_client(host, port, w, path, t + phase_seconds, interval, latencies, errors)
                               for w in range(clients)))
        elapsed = time.perf_counter() - t
        if keep:
            arr = np.array(latencies) * 1e3
            return {"p50_ms": float(np.percentile(arr, 50)), "p99_ms": float(np.percentile(arr, 99)),
                    "mean_ms": float(arr.mean()), "max_ms": float(arr.max()), "n": len(latencies),
                    "errors": len(errors), "first_errors": errors[:3], "requests_per_second": len(latencies) / elapsed,
                    "clients": clients, "target_rate": rate}
    raise AssertionError("unreachable")


def _process(args: tuple, q: mp.Queue) -> None:
    import uvloop

    q.put(uvloop.run(_load(*args)))


def run_load(host: str, port: int, kind: str, n_users: int, clients: int = 50, seconds: float = 10.0, rate: float | None = None,
             warmup: float = 1.0) -> dict:
    """One load run from a fresh process (its own core time, its own event loop)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_process, args=((host, port, kind, n_users, clients, seconds, rate, warmup), q))
    p.start()
    try:
        return q.get(timeout=seconds + warmup + 120)
    finally:
        p.join(30)

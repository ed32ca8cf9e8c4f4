"""Load test of `gptcls serve`: N requests from C concurrent clients, over loopback only.

    python bench/load_test.py [RUN_DIR] [--requests 2000] [--concurrency 32]

Starts `python -m gptcls serve RUN_DIR --host 127.0.0.1 --port <free port>` as a subprocess
(without RUN_DIR it first trains a gpt2-tiny run on the SMS data for one epoch, ~15-60 s),
waits for /healthz, then C httpx.AsyncClient workers share a fixed budget of N requests, each
classifying `--texts-per-request` real SMS messages. Everything is bounded (request count,
per-request timeout, a whole-run deadline), so the script always stops by itself, and the
server is stopped at the end. Prints a markdown table: latency p50/p90/p99/max, throughput,
errors.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_DATA = (Path(__file__).resolve().parents[2]
                / "shared/data/sms_spam_collection/SMSSpamCollection")
HOST = "127.0.0.1"  # loopback only: the load never leaves this machine


def sms_texts(path: Path = DEFAULT_DATA, limit: int = 5000) -> list[str]:
    if not path.is_file():  # no data beside the repository: synthetic messages
        return [f"message {i}: call 0800 {i:04d} to claim your prize" for i in range(limit)]
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    return [ln.split("\t", 1)[1] for ln in lines if "\t" in ln and ln.split("\t", 1)[1].strip()
            ][:limit]


def ensure_run(run_dir: str | None, workdir: Path) -> Path:
    """The given run directory, or a gpt2-tiny run trained here for one epoch."""
    if run_dir:
        return Path(run_dir)
    out = workdir / "tiny-run"
    print(f"training a gpt2-tiny run in {out} (one epoch) ...", file=sys.stderr)
    cmd = [sys.executable, "-m", "gptcls", "train", "--model", "gpt2-tiny", "--weights",
           "random", "--out", str(out), "--epochs", "1", "--lr", "1e-3", "--classify"]
    if DEFAULT_DATA.is_file():
        cmd += ["--data", str(DEFAULT_DATA)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, timeout=900)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(run: Path, port: int, log: Path, extra: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "gptcls", "serve", str(run), "--host", HOST, "--port",
           str(port), "--device", "cpu", *extra]
    with log.open("w") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)


async def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with status {proc.returncode}")
            try:
                if (await client.get(url + "/healthz", timeout=2)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("the server did not become ready in time")


async def load(url: str, texts: list[str], n: int, concurrency: int, per_request: int,
               deadline_s: float) -> tuple[list[float], int, dict[str, int], float]:
    """C workers take request numbers from a shared counter until N are sent (or time is up)."""
    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    counter = iter(range(n))
    stop_at = time.monotonic() + deadline_s
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        for i in counter:
            if time.monotonic() > stop_at:
                errors["deadline"] = errors.get("deadline", 0) + 1
                continue
            batch = [texts[(i * per_request + j) % len(texts)] for j in range(per_request)]
            t0 = time.perf_counter()
            try:
                r = await client.post(url + "/v1/classify", json={"texts": batch})
                ok = r.status_code == 200 and len(r.json()["results"]) == len(batch)
                kind = None if ok else f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                kind = type(exc).__name__
            if kind is None:
                latencies.append(time.perf_counter() - t0)
            else:
                errors[kind] = errors.get(kind, 0) + 1

    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return latencies, n, errors, time.perf_counter() - start


def report(latencies: list[float], n: int, errors: dict[str, int], wall: float,
           concurrency: int, per_request: int, run: Path) -> str:
    ms = np.array(latencies) * 1000 if latencies else np.array([float("nan")])
    ok = len(latencies)
    err = ", ".join(f"{k}: {v}" for k, v in errors.items()) or "0"
    rows = [
        ("run", str(run)), ("requests (ok / sent)", f"{ok:,} / {n:,}"),
        ("concurrent clients", str(concurrency)), ("texts per request", str(per_request)),
        ("errors", err), ("wall time", f"{wall:.2f} s"),
        ("throughput", f"{ok / wall:,.1f} requests/s ({ok * per_request / wall:,.1f} "
                       "messages/s)"),
        ("latency p50", f"{np.percentile(ms, 50):.1f} ms"),
        ("latency p90", f"{np.percentile(ms, 90):.1f} ms"),
        ("latency p99", f"{np.percentile(ms, 99):.1f} ms"),
        ("latency max", f"{ms.max():.1f} ms"), ("CPU cores", str(os.cpu_count())),
    ]
    return "\n".join(["| metric | value |", "| --- | --- |",
                      *(f"| {k} | {v} |" for k, v in rows)])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir", nargs="?", help="run directory (default: train a gpt2-tiny run)")
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--texts-per-request", type=int, default=1)
    p.add_argument("--deadline", type=float, default=600.0, help="seconds for the whole load")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="gptcls-load-") as tmp:
        run = ensure_run(args.run_dir, Path(tmp))
        port, log = free_port(), Path(tmp) / "server.log"
        proc = start_server(run, port, log, ["--max-batch", str(args.max_batch),
                                             "--max-wait-ms", str(args.max_wait_ms)])
        url = f"http://{HOST}:{port}"
        try:
            asyncio.run(wait_ready(url, proc))
            texts = sms_texts()
            result = asyncio.run(load(url, texts, args.requests, args.concurrency,
                                      args.texts_per_request, args.deadline))
        except RuntimeError as exc:
            print(f"load test failed: {exc}\n--- server log ---\n{log.read_text()[-3000:]}",
                  file=sys.stderr)
            return 1
        finally:
            proc.terminate()  # uvicorn shuts down cleanly on SIGTERM
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        print(report(*result, args.concurrency, args.texts_per_request, run))
    return 0


if __name__ == "__main__":
    sys.exit(main())

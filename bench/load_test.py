"""Load test of `gptcls serve` beside `gptcls predict`'s batch throughput, per precision.

    python bench/load_test.py RUN_DIR [--clients 1,8,32] [--precisions fp32,bf16,int8,auto]
                              [--seconds 20] [--batch-limit 0] [--client raw|httpx]

For each precision it loads the run here (for the batch figure), starts `python -m gptcls
serve RUN_DIR --host 127.0.0.1 --device cpu --precision P` on a free port (loopback only),
waits for /healthz, then for each client count C: labels the SMS here as `gptcls predict` does
(Classifier.predict_proba over all texts, the server idle) for the batch throughput, then runs
C concurrent clients for `--seconds` (after `--warmup` seconds not counted), each sending one
SMS per request (the SMS file's messages in turn) on its own keep-alive connection. Batch and
server alternate so each "server/batch" ratio compares one window of a shared machine. The
server's side of each level comes from its GET /v1/stats and /proc: texts per model call (and
their histogram), padding, the share of the time the model thread was busy, and the CPU of
the server, of its event loop (main thread) and of the load generator itself (all of them
share the machine's cores). The labels' agreement with fp32 is over the batch pass. "auto" is
resolved here (bf16 only where this CPU's bf16 is native and measured faster); when it
resolves to a precision already measured, its rows repeat that one's. Without RUN_DIR a
gpt2-tiny run is trained first (a smoke test of the script, not a figure). Prints one
markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

DEFAULT_DATA = (Path(__file__).resolve().parents[2]
                / "shared/data/sms_spam_collection/SMSSpamCollection")
HOST = "127.0.0.1"  # loopback only: the load never leaves this machine


def sms_texts(path: Path = DEFAULT_DATA, limit: int = 0) -> list[str]:
    if not path.is_file():  # no data beside the repository: synthetic messages
        return [f"message {i}: call 0800 {i:04d} to claim your prize" for i in range(500)]
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    texts = [ln.split("\t", 1)[1] for ln in lines if "\t" in ln and ln.split("\t", 1)[1].strip()]
    return texts[:limit] if limit else texts


def ensure_run(run_dir: str | None, workdir: Path, data: Path) -> Path:
    """The given run directory, or a gpt2-tiny run trained here for one epoch."""
    if run_dir:
        return Path(run_dir)
    out = workdir / "tiny-run"
    print(f"training a gpt2-tiny run in {out} (one epoch) ...", file=sys.stderr)
    cmd = [sys.executable, "-m", "gptcls", "train", "--model", "gpt2-tiny", "--weights",
           "random", "--out", str(out), "--epochs", "1", "--lr", "1e-3", "--classify"]
    if data.is_file():
        cmd += ["--data", str(data)]
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


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()  # uvicorn shuts down cleanly on SIGTERM
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def get_json(url: str, path: str, timeout: float = 10.0) -> dict:
    with urllib.request.urlopen(url + path, timeout=timeout) as r:
        return json.loads(r.read())


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300.0) -> dict:
    """Wait for /healthz; return /v1/model (which says the precision the server resolved)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}")
        try:
            get_json(url, "/healthz", timeout=2)
            return get_json(url, "/v1/model")
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the server did not become ready in time")


def request_bytes(text: str) -> bytes:
    body = json.dumps({"texts": [text]}).encode()
    return (b"POST /v1/classify HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\nContent-Type: "
            b"application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
            + body)


class RawClient:
    """One keep-alive HTTP/1.1 connection on asyncio streams: a few tens of microseconds of
    client CPU per request, where httpx spends about a millisecond (the client shares the
    server's cores, so its CPU is the server's loss)."""

    def __init__(self, port: int):
        self.port, self.conn = port, None

    async def post(self, payload: bytes) -> tuple[int, bytes]:
        if self.conn is None:
            self.conn = await asyncio.open_connection(HOST, self.port)
        reader, writer = self.conn
        try:
            writer.write(payload)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
            return status, await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, IndexError, ValueError):
            writer.close()
            self.conn = None
            raise OSError("connection failed") from None

    def close(self) -> None:
        if self.conn is not None:
            self.conn[1].close()


async def httpx_post(client: object, url: str, payload: bytes) -> tuple[int, bytes]:
    r = await client.post(url + "/v1/classify", content=payload.split(b"\r\n\r\n", 1)[1],
                          headers={"content-type": "application/json"})
    return r.status_code, r.content


async def load(url: str, texts: list[str], clients: int, warmup: float, seconds: float,
               kind: str = "raw") -> dict[str, float]:
    """`clients` workers, each sending one text per request back to back on its own
    keep-alive connection; only the requests that start after the warm-up and end before its
    end + `seconds` count. `client_cpu_s`: this process's CPU seconds over the level."""
    import contextlib

    latencies: list[float] = []
    errors = 0
    payloads = [request_bytes(t) for t in texts]
    next_text = iter(range(10**9))
    start, cpu0 = time.perf_counter(), time.process_time()
    t_from, t_to = start + warmup, start + warmup + seconds

    async def worker(post) -> None:
        nonlocal errors
        while (t0 := time.perf_counter()) < t_to:
            try:
                status, body = await post(payloads[next(next_text) % len(payloads)])
                ok = status == 200 and len(json.loads(body)["results"]) == 1
            except Exception:  # noqa: BLE001 - any failure is an error of the server's
                ok = False
            t1 = time.perf_counter()
            if t0 >= t_from and t1 <= t_to:
                if ok:
                    latencies.append(t1 - t0)
                else:
                    errors += 1

    async with contextlib.AsyncExitStack() as stack:
        if kind == "httpx":
            import httpx

            limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
            client = await stack.enter_async_context(httpx.AsyncClient(timeout=60, limits=limits))
            posts = [lambda b: httpx_post(client, url, b)] * clients
        else:
            raws = [RawClient(int(url.rsplit(":", 1)[1])) for _ in range(clients)]
            posts = [r.post for r in raws]
            stack.callback(lambda: [r.close() for r in raws])
        await asyncio.gather(*(worker(post) for post in posts))
    ms = np.array(latencies or [float("nan")]) * 1000
    return {"rps": len(latencies) / seconds, "p50": float(np.percentile(ms, 50)),
            "p95": float(np.percentile(ms, 95)), "p99": float(np.percentile(ms, 99)),
            "errors": errors, "n": len(latencies), "wall_s": time.perf_counter() - start,
            "client_cpu_s": time.process_time() - cpu0}


def thread_cpu(pid: int) -> tuple[float, float]:
    """(all threads, main thread) CPU seconds of process `pid`; the server's main thread runs
    the event loop (HTTP, FastAPI, JSON), the rest is torch, the model and tokenizer threads."""
    tick = os.sysconf("SC_CLK_TCK")
    total = main = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        cpu = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        total += cpu
        main += cpu if int(tid) == pid else 0.0
    return total, main


def load_level(url: str, proc: subprocess.Popen, texts: list[str], clients: int,
               args: argparse.Namespace) -> dict:
    """One client count: the load's figures with the server's side of them (model calls,
    texts per call, padding, model busy time, CPU by the server and by its event loop)."""
    before, (cpu0, main0) = get_json(url, "/v1/stats"), thread_cpu(proc.pid)
    row = asyncio.run(load(url, texts, clients, args.warmup, args.seconds, args.client))
    after, (cpu1, main1) = get_json(url, "/v1/stats"), thread_cpu(proc.pid)
    sizes = {int(k): v - before["batch_sizes"].get(k, 0) for k, v in after["batch_sizes"].items()}
    delta = {k: after[k] - before[k] for k in ("batches", "texts", "busy_s", "real_tokens",
                                                "padded_tokens")}
    wall = row["wall_s"]
    row.update(sizes={k: v for k, v in sizes.items() if v}, server_cpu=(cpu1 - cpu0) / wall,
               loop_cpu=(main1 - main0) / wall, client_cpu=row["client_cpu_s"] / wall,
               busy=delta["busy_s"] / wall,
               per_call=delta["texts"] / max(delta["batches"], 1),
               padding=1 - delta["real_tokens"] / max(delta["padded_tokens"], 1))
    return row


def batch_rate(clf: object, texts: list[str]) -> tuple[float, list[str]]:
    """msg/s of Classifier.predict_proba over all texts (what `gptcls predict` runs), labels."""
    t0 = time.perf_counter()
    labels = clf.labels_from_proba(clf.predict_proba(texts))
    return len(texts) / (time.perf_counter() - t0), labels


def measure(run: Path, precision: str, args: argparse.Namespace, texts: list[str],
            batch_texts: list[str], workdir: Path) -> tuple[str, list[dict], list[str]]:
    """One server at `precision`, loaded by each client count in turn; before each level the
    batch throughput in this process (the server idle), so each ratio compares one window."""
    from gptcls.classifier.classifier import Classifier

    clf = Classifier.load(run, device="cpu", precision=precision)
    clf.predict_proba(batch_texts[:64])  # warm-up
    port, log = free_port(), workdir / f"server-{precision}.log"
    extra = ["--precision", precision, "--max-batch", str(args.max_batch),
             "--max-wait-ms", str(args.max_wait_ms),
             "--max-batch-tokens", str(args.max_batch_tokens)]
    proc = start_server(run, port, log, extra)
    url, rows, labels = f"http://{HOST}:{port}", [], []
    try:
        info = wait_ready(url, proc)
        for c in args.clients:
            msgs, labels = batch_rate(clf, batch_texts)
            rows.append({**load_level(url, proc, texts, c, args), "batch": msgs})
    except RuntimeError as exc:
        raise SystemExit(f"load test failed: {exc}\n--- server log ---\n"
                         f"{log.read_text()[-3000:]}") from None
    finally:
        stop_server(proc)
    return info.get("precision", "?"), rows, labels


def table(args: argparse.Namespace, done: dict, resolved: dict) -> list[str]:
    """The markdown table, a row per precision and client count, and each row's histogram of
    texts per model call."""
    lines = ["| precision | clients | requests/s | p50 ms | p95 ms | p99 ms | errors "
             "| batch msg/s | server/batch | texts/call | padding | model busy | server CPU "
             "| loop CPU | client CPU | labels = fp32 |", "|" + " --- |" * 16]
    hist = []
    ref = done.get("fp32")
    for precision in args.precisions:
        served, rows, labels = done[resolved[precision]]
        agree = f"{np.mean(np.array(labels) == np.array(ref[2])):.2%}" if ref else "-"
        name = precision if precision == served else f"{precision} ({served})"
        for c, r in zip(args.clients, rows, strict=True):
            lines.append(
                f"| {name} | {c} | {r['rps']:.1f} | {r['p50']:.0f} | {r['p95']:.0f} "
                f"| {r['p99']:.0f} | {r['errors']} | {r['batch']:.1f} "
                f"| {r['rps'] / r['batch']:.2f} | {r['per_call']:.1f} | {r['padding']:.0%} "
                f"| {r['busy']:.0%} | {r['server_cpu']:.0%} | {r['loop_cpu']:.0%} "
                f"| {r['client_cpu']:.0%} | {agree} |")
            hist.append(f"{name}, {c} clients, texts per model call: "
                        + " ".join(f"{k}x{v}" for k, v in sorted(r["sizes"].items())))
    return lines + [""] + hist


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir", nargs="?", help="run directory (default: train a gpt2-tiny run)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="SMS Spam Collection file")
    p.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")],
                   default=[1, 8, 32], help="client counts to sweep (default: 1,8,32)")
    p.add_argument("--precisions", type=lambda s: s.split(","),
                   default=["fp32", "bf16", "int8", "auto"])
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds per level")
    p.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds per level")
    p.add_argument("--batch-limit", type=int, default=0,
                   help="label only this many SMS for the batch throughput (default: all)")
    p.add_argument("--client", choices=("raw", "httpx"), default="raw",
                   help="raw: keep-alive asyncio streams (lean); httpx: its AsyncClient")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--max-batch-tokens", type=int, default=4096)
    args = p.parse_args()

    import torch

    from gptcls.device import configure_threads, effective_precision

    threads = configure_threads()
    texts = sms_texts(args.data)
    batch_texts = texts[:args.batch_limit] if args.batch_limit else texts
    done: dict[str, tuple[str, list[dict], list[str]]] = {}
    with tempfile.TemporaryDirectory(prefix="gptcls-load-") as tmp:
        run = ensure_run(args.run_dir, Path(tmp), args.data)
        resolved = {q: effective_precision(q, torch.device("cpu")) for q in args.precisions}
        for r in dict.fromkeys(resolved.values()):  # each distinct precision once
            done[r] = measure(run, r, args, texts, batch_texts, Path(tmp))
    print(f"run: {run}; {os.cpu_count()} CPUs, torch threads {threads}; {args.seconds:g} s "
          f"per level after {args.warmup:g} s warm-up; one SMS per request ({args.client} "
          f"client); batch: {len(batch_texts):,} SMS, measured just before each level; CPU "
          f"columns: share of one core")
    print("\n".join(table(args, done, resolved)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

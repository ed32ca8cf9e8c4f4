"""Load test of `gptcls serve` beside `gptcls predict`'s batch throughput, per precision.

    python bench/load_test.py RUN_DIR [--clients 1,8,32] [--precisions fp32,bf16,int8,auto]
                              [--seconds 20] [--batch-limit 0]

For each precision it starts `python -m gptcls serve RUN_DIR --host 127.0.0.1 --device cpu
--precision P` on a free port (loopback only), waits for /healthz, then for each client count C
runs C concurrent clients for `--seconds` (after `--warmup` seconds not counted), each sending
one SMS per request (the SMS file's messages in turn), and stops the server. Then it labels the
SMS file in this process as `gptcls predict` does (Classifier.predict_proba over all texts) for
the batch throughput, and the labels' agreement with fp32. "auto" is resolved here (bf16 only
where this CPU's bf16 is native and measured faster); when it resolves to a precision already
measured, its rows repeat that one's. Without RUN_DIR a gpt2-tiny run is trained first (a
smoke test of the script, not a figure). Prints one markdown table.
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


async def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300.0) -> dict:
    """Wait for /healthz; return /v1/model (which says the precision the server resolved)."""
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with status {proc.returncode}")
            try:
                if (await client.get(url + "/healthz", timeout=2)).status_code == 200:
                    return (await client.get(url + "/v1/model", timeout=10)).json()
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("the server did not become ready in time")


async def load(url: str, texts: list[str], clients: int, warmup: float, seconds: float
               ) -> dict[str, float]:
    """`clients` workers, each sending one text per request back to back; only the requests
    that start after the warm-up and end before its end + `seconds` count."""
    import httpx

    latencies: list[float] = []
    errors = 0
    next_text = iter(range(10**9))
    start = time.perf_counter()
    t_from, t_to = start + warmup, start + warmup + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while (t0 := time.perf_counter()) < t_to:
            text = texts[next(next_text) % len(texts)]
            try:
                r = await client.post(url + "/v1/classify", json={"texts": [text]})
                ok = r.status_code == 200 and len(r.json()["results"]) == 1
            except httpx.HTTPError:
                ok = False
            t1 = time.perf_counter()
            if t0 >= t_from and t1 <= t_to:
                if ok:
                    latencies.append(t1 - t0)
                else:
                    errors += 1

    async with httpx.AsyncClient(timeout=60.0, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(clients)))
    ms = np.array(latencies or [float("nan")]) * 1000
    return {"rps": len(latencies) / seconds, "p50": float(np.percentile(ms, 50)),
            "p95": float(np.percentile(ms, 95)), "p99": float(np.percentile(ms, 99)),
            "errors": errors, "n": len(latencies)}


def batch_throughput(run: Path, precision: str, texts: list[str]) -> tuple[float, list[str]]:
    """msg/s of Classifier.predict_proba over all texts (what `gptcls predict` runs), labels."""
    from gptcls.classifier.classifier import Classifier

    clf = Classifier.load(run, device="cpu", precision=precision)
    clf.predict_proba(texts[:64])  # warm-up
    t0 = time.perf_counter()
    labels = clf.labels_from_proba(clf.predict_proba(texts))
    return len(texts) / (time.perf_counter() - t0), labels


def measure(run: Path, precision: str, args: argparse.Namespace, texts: list[str],
            workdir: Path) -> tuple[str, list[dict[str, float]]]:
    """One server at `precision`, loaded by each client count in turn."""
    port, log = free_port(), workdir / f"server-{precision}.log"
    extra = ["--precision", precision, "--max-batch", str(args.max_batch),
             "--max-wait-ms", str(args.max_wait_ms),
             "--max-batch-tokens", str(args.max_batch_tokens)]
    proc = start_server(run, port, log, extra)
    url = f"http://{HOST}:{port}"
    try:
        info = asyncio.run(wait_ready(url, proc))
        rows = [asyncio.run(load(url, texts, c, args.warmup, args.seconds))
                for c in args.clients]
    except RuntimeError as exc:
        raise SystemExit(f"load test failed: {exc}\n--- server log ---\n"
                         f"{log.read_text()[-3000:]}") from None
    finally:
        stop_server(proc)
    return info.get("precision", "?"), rows


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
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--max-batch-tokens", type=int, default=4096)
    args = p.parse_args()

    import torch

    from gptcls.device import configure_threads, effective_precision

    threads = configure_threads()
    texts = sms_texts(args.data)
    batch_texts = texts[:args.batch_limit] if args.batch_limit else texts
    done: dict[str, tuple[str, list[dict[str, float]], float, list[str]]] = {}
    lines = ["| precision | clients | requests/s | p50 ms | p95 ms | p99 ms | errors "
             "| batch msg/s | labels = fp32 |", "|" + " --- |" * 9]
    with tempfile.TemporaryDirectory(prefix="gptcls-load-") as tmp:
        run = ensure_run(args.run_dir, Path(tmp), args.data)
        resolved = {q: effective_precision(q, torch.device("cpu")) for q in args.precisions}
        for r in dict.fromkeys(resolved.values()):  # each distinct precision once
            served, rows = measure(run, r, args, texts, Path(tmp))
            done[r] = (served, rows, *batch_throughput(run, r, batch_texts))
    ref = done.get("fp32")
    for precision in args.precisions:
        served, rows, msgs, labels = done[resolved[precision]]
        agree = f"{np.mean(np.array(labels) == np.array(ref[3])):.2%}" if ref else "-"
        name = precision if precision == served else f"{precision} ({served})"
        for c, r in zip(args.clients, rows, strict=True):
            lines.append(f"| {name} | {c} | {r['rps']:.1f} | {r['p50']:.0f} | {r['p95']:.0f} "
                         f"| {r['p99']:.0f} | {r['errors']} | {msgs:.1f} | {agree} |")
    print(f"run: {run}; {os.cpu_count()} CPUs, torch threads {threads}; {args.seconds:g} s "
          f"per level after {args.warmup:g} s warm-up; one SMS per request; batch: "
          f"{len(batch_texts):,} SMS")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

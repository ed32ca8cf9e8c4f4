"""bench/load_test.py: its lean keep-alive client against a real uvicorn server, the server's
side of a load level (texts per model call, padding, CPU), and the table it prints."""

import argparse
import asyncio
import os
from types import SimpleNamespace

import pytest
from helpers import bench_modules, uvicorn_server

from gptcls.serving.server import create_app


@pytest.fixture(scope="module")
def bench():
    with bench_modules("load_test") as (module,):
        yield module


@pytest.fixture(scope="module")
def url(tiny_clf):
    with uvicorn_server(create_app(tiny_clf, max_wait_ms=20)) as base:
        yield base


@pytest.mark.parametrize("kind", ["raw", "httpx"])
def test_clients_get_answers_and_count_their_own_cpu(bench, url, tiny_test_texts, kind):
    row = asyncio.run(bench.load(url, tiny_test_texts[:50], 4, 0.2, 1.0, kind))
    assert row["n"] > 0 and row["errors"] == 0
    assert row["p50"] <= row["p99"] and row["rps"] == pytest.approx(row["n"] / 1.0)
    assert 0 < row["client_cpu_s"] < 2 * row["wall_s"]  # one process, at most 2 cores


def test_a_level_reports_the_servers_side(bench, url, tiny_test_texts):
    args = argparse.Namespace(warmup=0.2, seconds=1.0, client="raw")
    # uvicorn runs in this process here: its CPU is this process's
    row = bench.load_level(url, SimpleNamespace(pid=os.getpid()), tiny_test_texts[:50], 8, args)
    assert row["errors"] == 0 and sum(row["sizes"].values()) >= 1
    assert sum(k * v for k, v in row["sizes"].items()) >= row["n"]  # every answer had a call
    assert row["per_call"] >= 1 and 0 <= row["padding"] < 1 and row["busy"] >= 0
    assert 0 < row["loop_cpu"] <= row["server_cpu"]


def test_thread_cpu_counts_the_main_thread_within_the_total(bench):
    total, main = bench.thread_cpu(os.getpid())
    assert total >= main > 0


def test_table_has_the_ratio_and_each_rows_histogram(bench):
    row = {"rps": 30.0, "p50": 100.0, "p95": 200.0, "p99": 300.0, "errors": 0, "batch": 40.0,
           "per_call": 7.5, "padding": 0.1, "busy": 0.97, "server_cpu": 1.8, "loop_cpu": 0.1,
           "client_cpu": 0.05, "sizes": {4: 2, 11: 1}}
    args = argparse.Namespace(precisions=["fp32"], clients=[32])
    lines = bench.table(args, {"fp32": ("fp32", [row], ["ham"])}, {"fp32": "fp32"})
    assert lines[2].startswith("| fp32 | 32 | 30.0 | 100 | 200 | 300 | 0 | 40.0 | 0.75 | 7.5 |")
    assert "100.00%" in lines[2]
    assert lines[-1] == "fp32, 32 clients, texts per model call: 4x2 11x1"

"""bench/train_speed.py's contenders and its speed-up table (bench/train_report.py): ratios of
the book's and transformers' times over each gptcls contender, the 40x target, and why a
baseline has no ratio. Results are made up here; nothing trains."""


import pytest
from helpers import bench_modules


@pytest.fixture(scope="module")
def bench():
    with bench_modules("train_speed", "train_report") as modules:
        yield modules


def result(total: float, train: float, test: float = 0.9, trunk: str | None = None) -> dict:
    r = {"setup_s": 1.0, "train_s": train, "eval_s": 0.5, "total_s": total,
         "peak_rss_mb": 1000.0, "accuracy": {"train": 0.99, "validation": 0.9, "test": test}}
    return r if trunk is None else {**r, "trunk_precision": trunk}


def test_int8_is_a_contender(bench):
    train_speed, _ = bench
    args = train_speed.parse_args(["--contenders", "gptcls-fp32,gptcls-int8", "--quick"])
    assert args.contenders == ["gptcls-fp32", "gptcls-int8"]
    assert args.epochs == 1
    assert "gptcls-int8" in train_speed.RUNNERS


def test_ratio_table_per_gptcls_contender_against_the_40x_target(bench):
    _, report = bench
    results = {"gptcls-fp32": result(50.0, 40.0, 0.9133, "fp32"),
               "gptcls-int8": result(20.0, 10.0, 0.92, "int8"),
               "book": result(1000.0, 900.0), "hf": result(150.0, 140.0)}
    rows = report.ratio_table(results)
    assert ">= 40x" in rows[0] and ">= 4x" in rows[0]
    fp32, int8 = rows[2], rows[3]
    assert fp32 == ("| gptcls --precision fp32 | fp32 | 50.0 | 91.33% | 20.0x | 22.5x | MISSED "
                    "| 3.0x | MISSED |")
    assert int8 == ("| gptcls --precision int8 | int8 | 20.0 | 92.00% | 50.0x | 90.0x | met "
                    "| 7.5x | met |")
    assert len(rows) == 4  # both baselines ran: no note


def test_ratio_table_says_why_the_book_is_absent(bench):
    _, report = bench
    rows = report.ratio_table({"gptcls-fp32": result(50.0, 40.0, trunk="fp32")})
    assert rows[2].count("| - ") == 5  # no ratio and no verdict for either baseline
    assert rows[3] == ""
    notes = rows[4:]
    assert notes[0].startswith(report.TITLES["book"]) and "not in --contenders" in notes[0]
    assert notes[1].startswith(report.TITLES["hf"]) and "not in --contenders" in notes[1]


def test_ratio_table_names_a_failed_baseline(bench):
    _, report = bench
    rows = report.ratio_table({"gptcls": result(50.0, 40.0, trunk="bf16"),
                               "book": {"error": "no module 'llms_from_scratch'"},
                               "hf": result(150.0, 140.0)})
    assert len(rows) == 5 and rows[3] == ""
    assert "failed (no module 'llms_from_scratch')" in rows[4]
    assert "bench/setup.sh" in rows[4]


def test_ratio_table_without_gptcls(bench):
    _, report = bench
    rows = report.ratio_table({"book": result(1000.0, 900.0)})
    assert rows[2].startswith("| no gptcls contender ran")

"""Fuzz the data stage with N seeded cases (default 1,000) and print the tally.

Same generator and judge as tests/data/test_fuzz.py (loaded from there): the real files in
../shared/data mutated (truncation, random bytes, NULs, BOMs, UTF-16, CRLF/CR, mixed
delimiters, unbalanced quotes, a 10 MB line, invalid UTF-8, empty columns, header only, empty
files, binary garbage...), each run through `gptcls train --dry-run` in-process. A crash is any
exception, a traceback, an exit other than 0/2, more than one error line, or a written OUT.

    .venv/bin/python bench/fuzz_data.py --cases 1000 --seed 20240

Exits 1 if any case crashed. Not a test: the test runs 300 cases of the same generator.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_fuzz_module():
    sys.path.insert(0, str(ROOT / "tests"))  # test_fuzz imports tests/helpers.py
    spec = importlib.util.spec_from_file_location("test_fuzz", ROOT / "tests/data/test_fuzz.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["test_fuzz"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=1000, help="number of cases (default 1000)")
    parser.add_argument("--seed", type=int, default=None, help="generator seed (default: the "
                        "test's)")
    args = parser.parse_args()
    fuzz = load_fuzz_module()
    seed = fuzz.SEED if args.seed is None else args.seed
    cases = fuzz.make_cases(args.cases, seed)
    start = time.perf_counter()
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="gptcls-fuzz-") as tmp:
        for case in cases:
            outcomes.append(fuzz.run_case(case, Path(tmp)))
    seconds = time.perf_counter() - start
    counts = fuzz.tally(outcomes)
    print(f"{len(cases):,} cases through gptcls train --dry-run, seed {seed}, {seconds:.1f} s")
    print(f"{counts['exit 0']:>6,}  exit 0")
    exit2 = sorted(((v, k) for k, v in counts.items() if k.startswith("exit 2")), reverse=True)
    print(f"{sum(v for v, _ in exit2):>6,}  exit 2, by message:")
    for v, k in exit2:
        print(f"{v:>10,}  {k.removeprefix('exit 2: ')}")
    print(f"{counts['crash']:>6,}  crashes")
    for case, outcome in zip(cases, outcomes, strict=True):
        if outcome.crash:
            print(f"  {case}: {outcome.error}")
    return 1 if counts["crash"] else 0


if __name__ == "__main__":
    sys.exit(main())

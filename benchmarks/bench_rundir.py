"""Run-directory benchmark: metric rows and log records while a RunDirectory is open.

Two comparisons, each a ratio (never a time):

* ``log_metrics`` rows per second against a plain JSONL append of the same rows
  (``json.dumps`` + one write per row, flushed, as each of our rows is written
  by one ``os.write``); target <= 1.5x its cost. A buffered append (rows sit
  in a Python buffer, lost on a crash) is shown for information.
* the per-record cost of a log call while a RunDirectory is open (it renders
  once and writes two files, ``log.jsonl`` and ``log.txt``) against the core file
  sink alone (``setup_logging(console=False, log_file=<tmp>, send_start_log=False)``);
  target <= 1.5x. A run opened inside a session (both write) is shown too.

Every variant runs in its own fresh interpreter and the variants alternate
round by round; the figure per variant is the median over rounds of the
best-of-repeats cost per row or record.

Usage::

    python benchmarks/bench_rundir.py            # full run (~1 min)
    python benchmarks/bench_rundir.py --smoke    # a few seconds, for CI (no verdicts)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

METRIC_VARIANTS = ("metrics_ours", "metrics_plain_flushed", "metrics_plain_buffered")
LOG_VARIANTS = ("log_run", "log_core", "log_run_in_session")

METRICS = {"loss": 0.123456, "accuracy": 0.9, "lr": 1e-3, "grad_norm": 1.5}
EXTRAS: dict[str, Any] = {
    "camera": "cam-01",
    "stage": "acquisition",
    "frame_file": "frame_000123.tiff",
    "frame": 123,
    "exposure_ms": 16.6,
    "dropped": False,
}


Case = tuple[Callable[[int], None], Callable[[], None]]


def _metrics_case(variant: str, tmp: str) -> Case:
    if variant == "metrics_ours":
        from aind_log_utils import RunDirectory

        run = RunDirectory("bench", base_dir=tmp)

        def ours(i: int) -> None:
            run.log_metrics(METRICS, step=i)

        return ours, run.close
    handle = open(os.path.join(tmp, "plain.jsonl"), "a", encoding="utf-8")  # noqa: SIM115
    flush = variant == "metrics_plain_flushed"

    def plain(i: int) -> None:
        row = {"ts": time.time(), "step": i, "split": "train", "metrics": METRICS}
        handle.write(json.dumps(row) + "\n")
        if flush:
            handle.flush()

    return plain, handle.close


def _log_case(variant: str, tmp: str) -> Case:
    import logging

    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    closers: list[Callable[[], None]] = []
    if variant in ("log_core", "log_run_in_session"):
        from aind_log_utils import setup_logging

        session = setup_logging(
            "bench",
            console=False,
            log_file=os.path.join(tmp, "core.jsonl"),
            send_start_log=False,
            handle_sigterm=False,
        )
        closers.append(session.close)
    if variant in ("log_run", "log_run_in_session"):
        from aind_log_utils import RunDirectory

        closers.insert(0, RunDirectory("bench", base_dir=tmp).close)
    logger = logging.getLogger("bench")

    def log(i: int) -> None:
        logger.info("frame %d acquired", i, extra=EXTRAS)

    def close() -> None:
        for closer in closers:
            closer()

    return log, close


def worker(variant: str, n: int, repeats: int) -> float:
    """Run one variant in this interpreter; return the best ns per row/record."""
    with tempfile.TemporaryDirectory() as tmp:
        build = _metrics_case if variant.startswith("metrics") else _log_case
        case, close = build(variant, tmp)
        for i in range(min(n, 2000)):  # warm up
            case(i)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter_ns()
            for i in range(n):
                case(i)
            best = min(best, (time.perf_counter_ns() - start) / n)
        close()
    return best


def _spawn(args: list[str]) -> float:
    out = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, check=True, timeout=600
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny run for CI; prints figures, no verdict"
    )
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    if args.worker:
        print(worker(args.worker, args.n, args.repeats))
        return 0
    if args.smoke:
        args.n, args.repeats, args.rounds = 1000, 2, 1
    here = os.path.abspath(__file__)
    variants = (*METRIC_VARIANTS, *LOG_VARIANTS)
    results: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.rounds):
        for variant in variants:
            results[variant].append(
                _spawn(
                    [here, "--worker", variant, "--n", str(args.n), "--repeats", str(args.repeats)]
                )
            )
    med = {k: statistics.median(v) for k, v in results.items()}
    ratios = {
        "log_metrics / plain JSONL append, flushed (target <= 1.5)": med["metrics_ours"]
        / med["metrics_plain_flushed"],
        "log_metrics / plain JSONL append, buffered": med["metrics_ours"]
        / med["metrics_plain_buffered"],
        "log call, run open / core file sink (target <= 1.5)": med["log_run"] / med["log_core"],
        "log call, run open in a session / core file sink": med["log_run_in_session"]
        / med["log_core"],
    }
    print(
        f"{'variant':<24} ns per row/record (median of {args.rounds} rounds, best of {args.repeats})"
    )
    for k, v in med.items():
        print(f"{k:<24} {v:10.0f}")
    print()
    for k, v in ratios.items():
        print(f"{k:<60} {v:6.2f}x")
    if args.smoke:
        print("(smoke run: figures only, no verdict)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"ns": med, "ratios": ratios}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

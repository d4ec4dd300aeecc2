"""Core benchmark: per-record cost of aind-log-utils against the usual formatters.

Every variant runs in its own fresh interpreter, and the variants alternate round
by round, so nothing global of ours (a record factory, a filter, an import) can
slow or speed a baseline. The figure per variant is the median over rounds of the
best-of-repeats cost per record; the verdict is a ratio, never a time.

Usage::

    python benchmarks/bench_core.py            # full run (~1 min)
    python benchmarks/bench_core.py --smoke    # a few seconds, for CI (no verdicts)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from _workload import FIELDS, extras

VARIANTS = ("stdlib_text", "pjl_json", "pjl_orjson", "structlog_orjson", "ours")
FILTERED = ("stdlib_filtered", "ours_filtered")


def _extras() -> dict[str, Any]:
    return extras()


def _build(variant: str) -> Any:
    import logging

    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if variant in ("ours", "ours_filtered"):
        from aind_log_utils import setup_logging

        options: dict[str, Any] = dict(FIELDS)
        setup_logging(
            console=False,
            log_file=os.devnull,
            send_start_log=False,
            handle_sigterm=False,
            **options,
        )
        return logging.getLogger("bench")
    handler = logging.FileHandler(os.devnull)
    if variant in ("stdlib_text", "stdlib_filtered"):
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    elif variant == "pjl_json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter(static_fields=dict(FIELDS), timestamp=True))
    elif variant == "pjl_orjson":
        from pythonjsonlogger.orjson import OrjsonFormatter

        handler.setFormatter(OrjsonFormatter(static_fields=dict(FIELDS), timestamp=True))
    elif variant == "structlog_orjson":
        import orjson
        import structlog

        def add_fields(_: Any, __: str, event: Any) -> Any:
            event.update(FIELDS)
            return event

        handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=[
                    structlog.stdlib.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso", utc=True),
                    structlog.stdlib.ExtraAdder(),
                    add_fields,
                ],
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.JSONRenderer(
                        serializer=lambda obj, **kw: orjson.dumps(obj, default=str).decode()
                    ),
                ],
            )
        )
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return logging.getLogger("bench")


def worker(variant: str, n: int, repeats: int) -> float:
    """Run one variant in this interpreter; return the best ns per record."""
    logger = _build(variant)
    extras = _extras()
    filtered = variant.endswith("_filtered")
    log = logger.debug if filtered else logger.info
    for _ in range(min(n, 2000)):  # warm up
        log("frame %d acquired", 1, extra=extras)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for i in range(n):
            log("frame %d acquired", i, extra=extras)
        best = min(best, (time.perf_counter_ns() - start) / n)
    return best


def _spawn(args: list[str]) -> float:
    out = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, check=True, timeout=600
    )
    return float(out.stdout.strip().splitlines()[-1])


def import_cost(code: str, runs: int) -> float:
    """Median wall time of ``python -c code`` in ms."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


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
        args.n, args.repeats, args.rounds = 2000, 2, 1
    here = os.path.abspath(__file__)
    results: dict[str, list[float]] = {v: [] for v in (*VARIANTS, *FILTERED)}
    for _ in range(args.rounds):
        for variant in (*VARIANTS, *FILTERED):
            n = args.n * 5 if variant.endswith("_filtered") else args.n
            results[variant].append(
                _spawn([here, "--worker", variant, "--n", str(n), "--repeats", str(args.repeats)])
            )
    med = {k: statistics.median(v) for k, v in results.items()}
    runs = 3 if args.smoke else 15
    imp_ours = import_cost("import aind_log_utils", runs)
    imp_base = import_cost("import logging, json", runs)
    ratios = {
        "ours / pjl_json (target <= 0.6)": med["ours"] / med["pjl_json"],
        "ours / stdlib_text (target <= 1.4)": med["ours"] / med["stdlib_text"],
        "ours / pjl_orjson": med["ours"] / med["pjl_orjson"],
        "ours / structlog_orjson": med["ours"] / med["structlog_orjson"],
        "ours_filtered / stdlib_filtered (target <= 1.2)": med["ours_filtered"]
        / med["stdlib_filtered"],
        "import ours / import logging,json (target <= 2.0)": imp_ours / imp_base,
    }
    print(f"{'variant':<20} ns/record (median of {args.rounds} rounds, best of {args.repeats})")
    for k, v in med.items():
        print(f"{k:<20} {v:10.0f}")
    print(f"{'import ours':<20} {imp_ours:10.1f} ms")
    print(f"{'import logging,json':<20} {imp_base:10.1f} ms")
    print()
    for k, v in ratios.items():
        print(f"{k:<52} {v:6.2f}x")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "ns_per_record": med,
                    "import_ms": {"ours": imp_ours, "base": imp_base},
                    "ratios": ratios,
                },
                fh,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

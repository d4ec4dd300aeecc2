"""Loki benchmark: what the Loki sink costs the caller, and what it delivers.

The receiver (:class:`aind_log_utils.testing.LokiReceiver`) runs in its own
interpreter, driven over stdin/stdout by a line protocol (``away``, ``back``,
``count``, ``dupes``, ``clear``, ``limits default|none``, ``wait N T``, ``settle N T Q``,
``stats``, ``quit``), so that its HTTP parsing never shares a GIL with the program
measured. Every measured program runs in a fresh interpreter of its own too.

1. Caller cost per record with Loki attached (our sink as ``setup_logging`` builds
   it: on Linux, a sender process of its own does the delivery work), against the
   file-only setup (target <= 1.3x), the same sink with ``delivery="thread"``
   (``ours_loki_thread``: Windows, where no sender process runs; no target of its
   own), and the two peers (``loki_logger_handler``, ``python-logging-loki``)
   alone on the root logger, as ratios to the file-only setup. Each round runs every
   variant once, back to back (each its best of repeats); a ratio is taken within a
   round, and the figure is its median over rounds.
2. Delivered throughput from one process: N lines as fast as possible, then
   ``session.close(timeout_s=60)``; N / (first call -> receiver holds all N)
   (target >= 50,000 lines/s), in ``--bursts`` fresh programs (3), the verdict on
   their median: one 3-second burst falls in whatever speed the VM has then. Also how a line's CPU divides between the program,
   its sender process and the receiver: all three share this machine's CPUs; and
   how fast the same burst is logged without Loki, right after (no sink can
   deliver faster than the program logs).
3. Exit after a 20,000-line burst: last logging call -> process gone (target <= 1 s),
   everything delivered once it has exited.
4. The same at Loki's default limits (4 MiB/s, 6 MiB burst) with a ~13 MB burst:
   delivered before exit, exit time, 429s seen.
5. A 60 s outage while logging 5,000 lines/s: peak RSS during the outage (the
   program and its children, i.e. our sender process, together) against before it
   (target: growth <= the 32 MiB queue cap + 50 MB), then every line
   delivered exactly once after the receiver is back, and the time to drain; the
   peers through the same outage (lines lost, peak RSS).

Timings are printed, never asserted. The exit status is non-zero only when something
crashed or when OUR sink lost or duplicated a line (a correctness failure).

Usage::

    python benchmarks/bench_loki.py            # full run (~9 min)
    python benchmarks/bench_loki.py --smoke    # < 1 min, for CI (no verdicts)
    python benchmarks/bench_loki.py --json figures.json
    python benchmarks/bench_loki.py --receiver-nice 10   # the receiver as if elsewhere
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil
from _rounds import ratio_within_rounds
from _workload import FIELDS, extras

HERE = os.path.abspath(__file__)
PUSH_PATH = "/loki/api/v1/push"
MIB = 1024 * 1024


COST_VARIANTS = (
    "file_only",
    "ours_loki",
    "ours_loki_stalled",
    "ours_loki_thread",
    "peer_llh",
    "peer_pll",
)
PEERS = ("peer_llh", "peer_pll")
PEER_NAMES = {
    "peer_llh": "loki_logger_handler.LokiLoggerHandler",
    "peer_pll": "logging_loki.LokiQueueHandler",
}
#: The message of the delivery runs: with the standard fields, a ~600-byte line.
LINE_MSG = "line %07d of the delivery benchmark"


def _extras(serializable: bool = False) -> dict[str, Any]:
    return extras(serializable)


# ---------------------------------------------------------------------------
# The receiver's own process
# ---------------------------------------------------------------------------


def serve_receiver() -> int:
    """Run a LokiReceiver and answer one line per command on stdout."""
    from aind_log_utils.testing import LokiReceiver

    def make(limits: str) -> LokiReceiver:
        if limits == "default":  # Loki's defaults: 4 MiB/s, 6 MiB burst
            return LokiReceiver(discover_service_name=False).start()
        if limits == "none":
            return LokiReceiver(rate_limit_bytes_s=None, discover_service_name=False).start()
        raise ValueError(f"limits: expected default or none, got {limits!r}")

    rx = make("none")

    def settle(count: int, timeout_s: float, quiet_s: float) -> str:
        # Until `count` entries are stored, nothing new arrived for quiet_s, or timeout.
        deadline = time.monotonic() + timeout_s
        last, changed_at = -1, time.monotonic()
        while True:
            if rx.wait_for(count, min(0.1, max(0.0, deadline - time.monotonic()))):
                return f"ok {time.monotonic()!r} {rx.count()}"
            now, stored = time.monotonic(), rx.count()
            if stored != last:
                last, changed_at = stored, now
            elif quiet_s > 0 and now - changed_at >= quiet_s:
                return f"quiet {changed_at!r} {stored}"  # when the last entry came
            if now >= deadline:
                return f"timeout {now!r} {stored}"

    print(f"url {rx.url}", flush=True)
    for raw in sys.stdin:
        cmd, *args = raw.split() or [""]
        try:
            if cmd == "away":
                rx.go_away()
                reply = f"ok {time.monotonic()!r}"
            elif cmd == "back":
                rx.come_back()
                reply = f"ok {time.monotonic()!r}"
            elif cmd == "mode":  # ok | hang | slow | error429 | error500 ...
                rx.set_mode(args[0])  # type: ignore[arg-type]  # checked by the receiver
                reply = "ok"
            elif cmd == "count":
                reply = str(rx.count())
            elif cmd == "dupes":
                lines = rx.lines()
                reply = str(len(lines) - len(set(lines)))
            elif cmd == "clear":
                rx.clear()
                reply = "ok"
            elif cmd == "limits":
                rx.stop()
                rx = make(args[0])
                reply = f"url {rx.url}"
            elif cmd == "wait":
                reply = settle(int(args[0]), float(args[1]), 0.0)
            elif cmd == "settle":
                reply = settle(int(args[0]), float(args[1]), float(args[2]))
            elif cmd == "stats":
                entries = rx.entries()
                lines = [e.line for e in entries]
                meta_bytes = sum(
                    len(k.encode()) + len(v.encode())
                    for e in entries
                    for k, v in (e.metadata or {}).items()
                )
                reply = json.dumps(
                    {
                        "count": len(lines),
                        "dupes": len(lines) - len(set(lines)),
                        "line_bytes": (
                            statistics.fmean(len(s.encode()) for s in lines) if lines else 0.0
                        ),
                        "rate_counted_bytes": sum(len(s.encode()) for s in lines) + meta_bytes,
                        "requests": rx.requests,
                        "status": {str(k): v for k, v in sorted(rx.status_counts.items())},
                        "dropped": dict(rx.dropped),
                        "rejected": dict(rx.rejected),
                        "errors": [repr(e) for e in rx.errors[:3]],
                    }
                )
            elif cmd == "quit":
                rx.stop()
                print("ok", flush=True)
                return 0
            else:
                reply = f"error unknown command {cmd!r}"
        except Exception as exc:  # report, keep serving
            reply = f"error {type(exc).__name__}: {exc}"
        print(reply, flush=True)
    rx.stop()
    return 0


#: The environment of every child: PYTHONPATH points at the snapshot of the package.
_child_env: dict[str, str] | None = None


def snapshot_package(tmp: str, attempts: int = 12) -> dict[str, str]:
    """Copy the package under test, so that edits made during the run (it takes
    minutes) cannot mix two versions of it in one set of figures.

    Returns:
        The environment for the children (PYTHONPATH first on the copy).

    Raises:
        RuntimeError: the package did not import (retried: someone may be mid-edit).
    """
    import importlib.util

    spec = importlib.util.find_spec("aind_log_utils")  # finds it without importing it
    if spec is None or spec.origin is None:
        raise RuntimeError("aind_log_utils is not installed")
    source = os.path.dirname(spec.origin)
    dest = os.path.join(tmp, "pkg")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [dest, os.environ.get("PYTHONPATH")])),
    }
    probe = "import aind_log_utils._loki, aind_log_utils.testing, loki_logger_handler, logging_loki"
    error = ""
    for _ in range(attempts):
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(
            source,
            os.path.join(dest, "aind_log_utils"),
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        done = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False
        )
        if done.returncode == 0:
            return env
        error = done.stderr[-2000:]
        time.sleep(5)  # an edit in progress: try again
    raise RuntimeError(f"the package under test does not import:\n{error}")


class Receiver:
    """The parent's handle on the receiver process."""

    def __init__(self, nice: int = 0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, HERE, "--receiver", *(["--receiver-nice", str(nice)] if nice else [])],
            env=_child_env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.url = self._read().split()[1]
        self.ps = psutil.Process(self.proc.pid)

    def _read(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the receiver process died")
        return line.strip()

    def ask(self, command: str) -> str:
        """Send one command; return its one-line answer."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        reply = self._read()
        if reply.startswith("error"):
            raise RuntimeError(f"receiver: {command!r} -> {reply}")
        return reply

    @property
    def push_url(self) -> str:
        return self.url + PUSH_PATH

    def count(self) -> int:
        return int(self.ask("count"))

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.ask("stats"))
        return result

    def limits(self, which: str) -> None:
        self.url = self.ask(f"limits {which}").split()[1]

    def wait(self, count: int, timeout_s: float, quiet_s: float = 0.0) -> tuple[str, float, int]:
        """Wait for ``count`` entries; (ok|quiet|timeout, monotonic time, stored)."""
        word, when, stored = self.ask(f"settle {count} {timeout_s} {quiet_s}").split()
        return word, float(when), int(stored)

    def wait_idle(self, timeout_s: float = 60.0) -> None:
        """Block until the receiver has stopped burning CPU (a backlog is parsed)."""
        deadline = time.monotonic() + timeout_s
        before = sum(self.ps.cpu_times()[:2])
        while time.monotonic() < deadline:
            time.sleep(0.25)
            now = sum(self.ps.cpu_times()[:2])
            if now - before < 0.01:
                return
            before = now

    def close(self) -> None:
        try:
            self.ask("quit")
        except Exception:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ---------------------------------------------------------------------------
# The measured programs (each in its own interpreter)
# ---------------------------------------------------------------------------


def _setup(variant: str, url: str, spool: str, *, start_log: bool = False) -> Any:
    """Install one variant on the root logger; return the session (ours) or None."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    if variant in ("file_only", "ours_loki", "ours_loki_stalled", "ours_loki_thread"):
        from aind_log_utils import setup_logging

        options: dict[str, Any] = dict(FIELDS)
        if variant.startswith("ours_loki"):
            options.update(loki_url=url, loki_options={"spool_dir": spool})
        if variant == "ours_loki_thread":  # where no sender process runs: Windows
            options["loki_options"]["delivery"] = "thread"
        return setup_logging(
            console=False,
            log_file=os.devnull,
            send_start_log=start_log,
            handle_sigterm=False,
            **options,
        )
    handler: logging.Handler
    if variant == "peer_llh":
        from loki_logger_handler.loki_logger_handler import LokiLoggerHandler

        handler = LokiLoggerHandler(url=url + PUSH_PATH, labels={"service_name": "bench"})
    elif variant == "peer_pll":
        import queue

        from logging_loki import LokiQueueHandler

        handler = LokiQueueHandler(
            queue.Queue(-1), url=url + PUSH_PATH, tags={"service_name": "bench"}, version="1"
        )
    else:
        raise ValueError(f"unknown variant {variant!r}")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return None


def _say(*words: object) -> None:
    print(*words, flush=True)


#: Our session in a worker, for the exit report.
_session: Any = None


def _setup_reporting(variant: str, url: str, spool: str, *, start_log: bool = False) -> Any:
    """_setup, and print our sink's counters at exit (after the session's own exit hook,
    which was registered later, so runs earlier)."""
    global _session
    if variant.startswith("ours_loki"):
        atexit.register(_report_at_exit)
    _session = _setup(variant, url, spool, start_log=start_log)
    return _session


def _report_at_exit() -> None:
    if _session is not None:
        _say("stats", json.dumps(_session.stats().get("sinks", {}).get("loki", {})))


def worker_cost(variant: str, n: int, repeats: int, url: str, spool: str) -> float:
    """Best ns per record of one variant in this interpreter."""
    _setup_reporting(variant, url, spool)
    logger = logging.getLogger("bench")
    extras = _extras(serializable=variant in PEERS)
    log = logger.info
    for _ in range(min(n, 2000)):  # warm up
        log("frame %d acquired", 1, extra=extras)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for i in range(n):
            log("frame %d acquired", i, extra=extras)
        best = min(best, (time.perf_counter_ns() - start) / n)
    return best


def worker_burst(
    n: int, url: str, spool: str, *, close: bool, start_log: bool, variant: str = "ours_loki"
) -> None:
    """Log n lines as fast as possible; then close (throughput) or just exit."""
    session = _setup_reporting(variant, url, spool, start_log=start_log)
    log = logging.getLogger("bench").info
    extra = {"frame": 0}
    _say("t0", repr(time.monotonic()))
    for i in range(n):
        log(LINE_MSG, i, extra=extra)
    _say("last", repr(time.monotonic()))
    if close:
        session.close(timeout_s=60)
        _say("closed", repr(time.monotonic()))
        # This process's CPU, and its reaped children's (the sender process, waited
        # for by close()): how a line's work divides between the two.
        times = os.times()
        _say("cpu", repr(times.user + times.system),
             repr(times.children_user + times.children_system))  # fmt: skip


def worker_outage(variant: str, url: str, spool: str, rate: int, log_s: float) -> None:
    """Log ``rate`` lines/s for ``log_s`` (a deadline loop); wait for "exit" on stdin."""
    _setup_reporting(variant, url, spool)
    log = logging.getLogger("bench").info
    extra = {"frame": 0}
    chunk = max(1, rate // 200)  # wake every 5 ms
    sent = 0
    _say("ready", repr(time.monotonic()))
    t0 = time.monotonic()
    end = t0 + log_s
    while (now := time.monotonic()) < end:
        due = min(int((now - t0) * rate), int(log_s * rate))
        while sent < due:
            log(LINE_MSG, sent, extra=extra)
            sent += 1
        pause = min(t0 + (sent + chunk) / rate, end) - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    _say("done", sent, repr(time.monotonic()))
    sys.stdin.readline()  # "exit"


def worker_replay(url: str, spool: str) -> None:
    """Start our sink on a spool directory (it replays what is left there) until told
    to exit (flush() waits only for the engine's own records, not for that replay)."""
    _setup_reporting("ours_loki", url, spool)
    _say("ready")
    sys.stdin.readline()  # "exit"


def run_worker(kind: str, params: dict[str, Any]) -> int:
    if kind == "cost":
        _say("ns", worker_cost(**params))
    elif kind == "burst":
        worker_burst(**params)
    elif kind == "outage":
        worker_outage(**params)
    elif kind == "replay":
        worker_replay(**params)
    else:
        raise ValueError(f"unknown worker {kind!r}")
    return 0


# ---------------------------------------------------------------------------
# The parent
# ---------------------------------------------------------------------------


@dataclass
class Child:
    """A measured program: its process, its stdout lines, its stderr file."""

    proc: subprocess.Popen[str]
    stderr: IO[str]
    name: str
    lines: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, kind: str, params: dict[str, Any], *, name: str) -> Child:
        err = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed by finish()
        proc = subprocess.Popen(
            [sys.executable, HERE, "--worker", kind, "--params", json.dumps(params)],
            env=_child_env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            bufsize=1,
        )
        return cls(proc, err, name)

    def expect(self, word: str) -> list[str]:
        """Read stdout up to the line starting with ``word``; return its words."""
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.name}: ended before {word!r}\n{self.stderr_tail()}")
            self.lines.append(line.strip())
            parts = line.split()
            if parts and parts[0] == word:
                return parts[1:]

    def tell(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout_s: float = 120.0) -> None:
        """Wait for the exit; read what is left of stdout; raise if it crashed."""
        # Not communicate(): it would miss what readline() already buffered.
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        timer = threading.Timer(timeout_s, self.proc.kill)
        timer.start()
        try:
            self.lines.extend(x.strip() for x in self.proc.stdout.read().splitlines())
            self.proc.wait()
        finally:
            timer.cancel()
        tail = self.stderr_tail() if self.proc.returncode != 0 else ""
        self.stderr.close()
        if self.proc.returncode != 0:
            raise RuntimeError(f"{self.name}: exit status {self.proc.returncode}\n{tail}")

    def stderr_tail(self, chars: int = 3000) -> str:
        self.stderr.flush()
        self.stderr.seek(0)
        return self.stderr.read()[-chars:]

    def sink_stats(self) -> dict[str, Any]:
        for line in reversed(self.lines):
            if line.startswith("stats "):
                result: dict[str, Any] = json.loads(line[6:])
                return result
        return {}


class Bench:
    """Runs the five measurements against one receiver process."""

    def __init__(self, args: argparse.Namespace, rx: Receiver, tmp: str) -> None:
        self.args = args
        self.rx = rx
        self.tmp = tmp
        self.failures: list[str] = []
        self.figures: dict[str, Any] = {}
        self._spools = 0

    def spool(self) -> str:
        self._spools += 1
        path = os.path.join(self.tmp, f"spool-{self._spools}")
        os.makedirs(path)
        return path

    def fail(self, message: str) -> None:
        self.failures.append(message)
        print(f"  FAIL (our sink): {message}")

    @staticmethod
    def spool_bytes(path: str) -> int:
        return sum(p.stat().st_size for p in Path(path).iterdir() if p.is_file())

    def recover_from_spool(self, spool: str, expected: int) -> int:
        """Run a next process on the spool dir; return what the receiver then holds."""
        child = Child.start("replay", {"url": self.rx.url, "spool": spool}, name="replay")
        child.expect("ready")
        stored = self.rx.wait(expected, 30.0, 3.0)[2]
        child.tell("exit")
        child.finish()
        print(f"  the next run's sink counters: {child.sink_stats()}")
        return stored

    def check_delivery(self, what: str, spool: str, expected: int) -> dict[str, Any]:
        """Stored vs expected for our sink; a loss or a stored duplicate is a failure."""
        st = self.rx.stats()
        unique = st["count"] - st["dupes"]
        result = {
            "expected": expected,
            "stored": st["count"],
            "stored_dupes": st["dupes"],
            "resends_dropped_as_duplicate": st["dropped"].get("duplicate", 0),
            "spool_left_bytes": self.spool_bytes(spool),
        }
        if st["dupes"]:
            self.fail(f"{what}: {st['dupes']} line(s) stored twice")
        if unique < expected:
            missing = expected - unique
            if result["spool_left_bytes"]:
                after = self.recover_from_spool(spool, expected)
                result["stored_after_next_run_replayed"] = after
                print(
                    f"  {missing} line(s) not delivered before exit; after a next run "
                    f"replayed the spool: {after}/{expected}"
                )
                if after - self.rx.stats()["dupes"] < expected:
                    self.fail(f"{what}: {expected - after} line(s) lost (spool replayed)")
            else:
                self.fail(f"{what}: {missing} of {expected} line(s) lost")
        if st["errors"]:
            print(f"  receiver errors: {st['errors']}")
        return result

    # -- 1. caller cost -------------------------------------------------------
    def caller_cost(self) -> None:
        a = self.args
        n, repeats, rounds = (2000, 2, 1) if a.smoke else (a.n, a.repeats, a.rounds)
        print(f"\n== 1. caller cost per record (ns; median of {rounds} rounds, best of {repeats})")
        results: dict[str, list[float]] = {v: [] for v in COST_VARIANTS}
        spooled: list[int] = []
        for _ in range(rounds):
            for variant in COST_VARIANTS:
                self.rx.ask("clear")
                params = {"variant": variant, "n": n, "repeats": repeats,
                          "url": self.rx.url, "spool": self.spool()}  # fmt: skip
                if variant == "ours_loki_stalled":
                    self.rx.ask("mode hang")  # every push is held, never answered
                child = Child.start("cost", params, name=f"cost:{variant}")
                results[variant].append(float(child.expect("ns")[0]))
                if variant == "ours_loki_stalled":
                    self.rx.ask("mode ok")
                child.finish()
                if variant == "ours_loki":
                    spooled.append(int(child.sink_stats().get("spooled", 0)))
                self.rx.wait_idle()  # a backlog parsed there must not slow the next variant
        med = {k: statistics.median(v) for k, v in results.items()}

        ratios = {k: ratio_within_rounds(results[k], results["file_only"]) for k in results}
        print("  (ratios: the median over rounds of the ratio within a round)")
        for k, v in med.items():
            label = PEER_NAMES.get(k, k)
            print(f"  {label:<40} {v:9.0f} ns   {ratios[k]:5.2f}x file_only")
        ratio = ratios["ours_loki"]
        verdict = "" if a.smoke else ("  (met)" if ratio <= 1.3 else "  (MISSED)")
        print(f"  ours_loki / file_only (target <= 1.3x): {ratio:.2f}x{verdict}")
        stalled = ratio_within_rounds(results["ours_loki_stalled"], results["ours_loki"])
        verdict = "" if a.smoke else ("  (met)" if stalled <= 1.2 else "  (MISSED)")
        print(f"  ours_loki_stalled / ours_loki (target <= 1.2x): {stalled:.2f}x{verdict}")
        total = n * (repeats + 1)
        print(
            f"  ours_loki: records that overflowed the queue to the spool, per run of "
            f"~{total:,}: {spooled}"
        )
        self.figures["caller_cost_spooled_per_run"] = spooled
        self.rx.ask("clear")
        self.figures["caller_cost_ns"] = med
        self.figures["caller_cost_rounds_ns"] = results
        self.figures["caller_cost_ratio_to_file_only"] = ratios

    # -- 2. throughput --------------------------------------------------------
    def throughput(self) -> None:
        n = 5000 if self.args.smoke else self.args.lines
        bursts = 1 if self.args.smoke else max(1, self.args.bursts)
        print(
            f"\n== 2. delivered throughput, one process, {n:,} lines then close(timeout_s=60); "
            f"{bursts} burst(s), each in a fresh program"
        )
        runs = [self._burst(n, index + 1) for index in range(bursts)]
        rate = statistics.median(run["lines_per_s"] for run in runs)
        ref_rate = statistics.median(run["file_only_lines_per_s"] for run in runs)
        if bursts > 1:
            each = ", ".join(f"{run['lines_per_s']:,.0f}" for run in runs)
            print(
                f"  median of {bursts} bursts: {rate:,.0f} lines/s delivered ({each}); "
                f"without Loki {ref_rate:,.0f} lines/s logged"
            )
        if not self.args.smoke:
            print(f"  target >= 50,000 lines/s: {'met' if rate >= 50_000 else 'MISSED'}")
        self.figures["throughput"] = {
            "lines_per_s": rate,
            "file_only_lines_per_s": ref_rate,
            "bursts": runs,
        }

    def _burst(self, n: int, index: int) -> dict[str, Any]:
        """One throughput burst in a fresh program, then the same burst without Loki."""
        print(f"  burst {index}:")
        self.rx.ask("clear")
        spool = self.spool()
        params = {"n": n, "url": self.rx.url, "spool": spool, "close": True, "start_log": False}
        rx_cpu = sum(self.rx.ps.cpu_times()[:2])
        child = Child.start("burst", params, name="throughput")
        t0 = float(child.expect("t0")[0])
        word, reached, stored = self.rx.wait(n, 180.0)
        rx_cpu = sum(self.rx.ps.cpu_times()[:2]) - rx_cpu
        last = float(child.expect("last")[0])
        closed = float(child.expect("closed")[0])
        program_cpu, sender_cpu = (float(x) for x in child.expect("cpu"))
        child.finish()
        st = self.rx.stats()
        rate = n / (reached - t0) if word == "ok" else float("nan")
        print(
            f"    caller: {n / (last - t0):,.0f} lines/s logged; close() took {closed - last:.2f} s"
        )
        print(
            f"    receiver held all {n:,} after {reached - t0:.2f} s: {rate:,.0f} lines/s"
            if word == "ok"
            else f"    receiver held only {stored:,}/{n:,} after 180 s"
        )
        sink = child.sink_stats()
        print(
            f"    {st['requests']} pushes ({n / max(1, st['requests']):,.0f} lines/push), "
            f"{st['line_bytes']:.0f} bytes/line, statuses {st['status']}, "
            f"refused by the receiver {st['rejected'] or 'none'}"
        )
        print(f"    sink counters: {sink}")
        split = {"program": program_cpu / n * 1e6, "sender": sender_cpu / n * 1e6,
                 "receiver": rx_cpu / n * 1e6}  # fmt: skip
        print(
            f"    CPU per line (start-up included): program {split['program']:.1f} us, sender "
            f"process {split['sender']:.1f} us, receiver {split['receiver']:.1f} us; "
            f"{sum(split.values()):.1f} us on {os.cpu_count()} CPUs"
        )
        delivery = self.check_delivery("throughput", spool, n)
        # The same burst without Loki, right after: no sink can deliver faster than
        # the program logs, and on this VM that speed drifts by a third over minutes.
        ref = Child.start("burst", {**params, "variant": "file_only"}, name="file_only burst")
        ref_t0 = float(ref.expect("t0")[0])
        ref_rate = n / (float(ref.expect("last")[0]) - ref_t0)
        ref.finish()
        print(
            f"    the same burst without Loki, right after: {ref_rate:,.0f} lines/s logged; "
            f"delivered with Loki / logged without: {rate / ref_rate:.2f}"
        )
        return {
            "file_only_lines_per_s": ref_rate,
            "lines": n,
            "lines_per_s": rate,
            "caller_lines_per_s": n / (last - t0),
            "close_s": closed - last,
            "cpu_per_line_us": split,
            "line_bytes": st["line_bytes"],
            "pushes": st["requests"],
            "sink": sink,
            **delivery,
        }

    # -- 3 and 4. exit after a burst ------------------------------------------
    def exit_after_burst(self, key: str, title: str, n: int, *, limited: bool = False) -> None:
        print(f"\n== {title}")
        self.rx.ask("clear")
        spool = self.spool()
        params = {"n": n, "url": self.rx.url, "spool": spool, "close": False, "start_log": True}
        child = Child.start("burst", params, name=key)
        t0 = float(child.expect("t0")[0])
        last = float(child.expect("last")[0])
        child.proc.wait(120)
        gone = time.monotonic()
        stored_at_exit = self.rx.count()
        child.finish()
        expected = n + 2  # + Starting and Stopping
        st = self.rx.stats()
        exit_s = gone - last
        print(
            f"  logged {n:,} lines in {last - t0:.2f} s; last call -> process gone: {exit_s:.2f} s"
        )
        print(
            f"  stored right after exit: {stored_at_exit:,}/{expected:,} "
            f"({st['line_bytes']:.0f} bytes/line); statuses {st['status']} "
            f"(429s: {st['status'].get('429', 0)})"
        )
        sink = child.sink_stats()
        print(f"  sink counters: {sink}")
        floor_s = 0.0
        if limited:
            # Loki counts line + structured metadata bytes against the token bucket.
            floor_s = max(0.0, st["rate_counted_bytes"] - 6 * MIB) / (4 * MIB)
            print(
                f"  {st['rate_counted_bytes'] / 1e6:.1f} MB counted by the rate limit: no "
                f"client can be done sooner than {floor_s:.2f} s after its first push; "
                f"first call -> exit took {gone - t0:.2f} s"
            )
        if not self.args.smoke:
            delivered = stored_at_exit >= expected
            if limited:
                print(
                    f"  target everything delivered before exit: {'met' if delivered else 'MISSED'}"
                )
            else:
                ok = exit_s <= 1.0 and delivered
                print(
                    f"  target exit <= 1 s with everything delivered: {'met' if ok else 'MISSED'}"
                )
        self.figures[key] = {
            "lines": n,
            "exit_s": exit_s,
            "first_call_to_exit_s": gone - t0,
            "stored_at_exit": stored_at_exit,
            "rate_counted_bytes": st["rate_counted_bytes"],
            "rate_limit_floor_s": floor_s,
            "status": st["status"],
            "sink": sink,
            **self.check_delivery(key, spool, expected),
        }

    # -- 5. outage ----------------------------------------------------------------
    def outage(self) -> None:
        a = self.args
        outage_s = 3.0 if a.smoke else a.outage_s
        pre_s = 1.0 if a.smoke else 3.0
        rate = a.rate
        print(f"\n== 5. a {outage_s:g} s outage while logging {rate:,} lines/s")
        self.figures["outage"] = {"outage_s": outage_s, "rate": rate}
        for variant in ("ours_loki", *PEERS):
            self.rx.ask("clear")
            self.rx.wait_idle()
            spool = self.spool()
            params = {"variant": variant, "url": self.rx.url, "spool": spool,
                      "rate": rate, "log_s": pre_s + outage_s}  # fmt: skip
            child = Child.start("outage", params, name=f"outage:{variant}")
            ready = float(child.expect("ready")[0])
            samples: list[tuple[float, int]] = []
            stop = threading.Event()
            sampler = threading.Thread(
                target=_sample_rss, args=(child.proc.pid, samples, stop), daemon=True
            )
            sampler.start()
            time.sleep(max(0.0, ready + pre_s - time.monotonic()))
            t_away = float(self.rx.ask("away").split()[1])
            time.sleep(max(0.0, ready + pre_s + outage_s - time.monotonic()))
            t_back = float(self.rx.ask("back").split()[1])
            sent_s, _ = child.expect("done")
            sent = int(sent_s)
            held = self.rx.count()  # nothing arrives while away: what was stored before
            first_s: float | None = None
            if variant == "ours_loki":
                if held < sent:  # the sink's backoff decides when it tries again
                    got, when, _ = self.rx.wait(held + 1, 120.0)
                    first_s = when - t_back if got == "ok" else None
                # A line dropped (spool cap) never comes: stop 15 s after the last one.
                word, reached, stored = self.rx.wait(sent, 180.0, 15.0)
            else:  # the peers may never get there: stop once nothing new came for 12 s
                word, reached, stored = self.rx.wait(sent, 120.0, 3.0 if a.smoke else 12.0)
            drain_s = reached - t_back
            stored_before_exit = stored
            child.tell("exit")
            child.finish()
            stop.set()
            sampler.join()
            st = self.rx.stats()
            before = max((r for t, r in samples if t < t_away), default=0)
            during = max((r for t, r in samples if t_away <= t <= t_back), default=0)
            peak = max((r for _, r in samples), default=0)
            unique = st["count"] - st["dupes"]
            row: dict[str, Any] = {
                "sent": sent,
                "stored": st["count"],
                "lost": sent - unique,
                "stored_dupes": st["dupes"],
                "resends_dropped_as_duplicate": st["dropped"].get("duplicate", 0),
                "rss_before_mb": before / 1e6,
                "rss_peak_outage_mb": during / 1e6,
                "rss_peak_mb": peak / 1e6,
                "rss_growth_mb": (during - before) / 1e6,
                "drain_s": drain_s if word == "ok" else None,
                "last_entry_after_back_s": drain_s if word != "timeout" else None,
                "first_push_after_back_s": first_s,
                "stored_before_outage": held,
                "stored_before_exit": stored_before_exit,
                "line_bytes": st["line_bytes"],
                "statuses": st["status"],
                "refused": st["rejected"],
            }
            name = PEER_NAMES.get(variant, "ours (aind_log_utils)")
            print(f"  {name}:")
            print(
                f"    RSS before {before / 1e6:.1f} MB, peak during outage {during / 1e6:.1f} MB "
                f"(+{(during - before) / 1e6:.1f} MB), peak overall {peak / 1e6:.1f} MB"
            )
            first = "" if first_s is None else f" (first push {first_s:.2f} s after back)"
            drained = (
                f"all {sent:,} stored {drain_s:.2f} s after back{first}"
                if word == "ok"
                else f"{stored:,}/{sent:,} stored before exit, the last {drain_s:.2f} s after "
                f"back{first}"
                if word == "quiet"
                else f"{stored:,}/{sent:,} stored before exit, still arriving when the wait "
                f"ended {drain_s:.0f} s after back"
            )
            print(
                f"    sent {sent:,}; {drained}; after exit {st['count']:,} stored, "
                f"lost {sent - unique:,}, stored twice {st['dupes']}, "
                f"resends dropped as duplicates {row['resends_dropped_as_duplicate']}"
            )
            print(f"    receiver answered {st['status']}, refused {st['rejected'] or 'nothing'}")
            if variant == "ours_loki":
                row["sink"] = child.sink_stats()
                row.update(self.check_delivery("outage", spool, sent))
                print(f"    sink counters: {row['sink']}")
                cap = 32 * MIB / 1e6 + 50
                if not a.smoke:
                    met = (during - before) / 1e6 <= cap
                    print(
                        f"    target RSS growth <= {cap:.1f} MB (queue cap + 50 MB): "
                        f"{'met' if met else 'MISSED'}"
                    )
            self.figures["outage"][variant] = row


def _sample_rss(pid: int, out: list[tuple[float, int]], stop: threading.Event) -> None:
    """Sample the RSS of the program and of its children (our sender process) together."""
    try:
        proc = psutil.Process(pid)
        while not stop.is_set():
            rss = proc.memory_info().rss
            for child in proc.children(recursive=True):
                try:
                    rss += child.memory_info().rss
                except psutil.Error:
                    pass  # it just exited
            out.append((time.monotonic(), rss))
            stop.wait(0.02)
    except psutil.Error:
        pass  # it exited


def main() -> int:
    global _child_env
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--receiver-nice", type=int, default=0, metavar="N",
        help="run the receiver at niceness N (a stand-in for a Loki on another machine: "
        "it takes only the CPU the program leaves); the verdicts are for the default, 0",
    )  # fmt: skip
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--params", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=20000, help="records per repeat (cost)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--lines", type=int, default=200_000, help="lines of the throughput run")
    parser.add_argument(
        "--bursts", type=int, default=3,
        help="throughput bursts, each in a fresh program; the verdict is on their median",
    )  # fmt: skip
    parser.add_argument("--outage-s", type=float, default=60.0)
    parser.add_argument("--rate", type=int, default=5000, help="lines/s during the outage")
    parser.add_argument(
        "--only", help="comma-separated parts to run: cost,throughput,exit,limits,outage"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny run for CI; prints figures, no verdict"
    )
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    if args.receiver:
        if args.receiver_nice:
            os.nice(args.receiver_nice)
        return serve_receiver()
    if args.worker:
        return run_worker(args.worker, json.loads(args.params))
    parts = set((args.only or "cost,throughput,exit,limits,outage").split(","))
    started = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="bench-loki-")
    try:
        _child_env = snapshot_package(tmp)
        rx = Receiver(args.receiver_nice)
        if args.receiver_nice:
            print(f"(the receiver runs at nice {args.receiver_nice}: a stand-in for a Loki "
                  "on another machine)")  # fmt: skip
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    bench = Bench(args, rx, tmp)
    try:
        if "cost" in parts:
            bench.caller_cost()
        if "throughput" in parts:
            bench.throughput()
        if "exit" in parts:
            n = 2000 if args.smoke else 20_000
            bench.exit_after_burst("exit", f"3. exit after a {n:,}-line burst", n)
        if "limits" in parts:
            n = 2000 if args.smoke else 22_000
            rx.limits("default")
            bench.exit_after_burst(
                "exit_at_default_limits",
                f"4. exit after a {n:,}-line burst, receiver at Loki's default limits "
                "(4 MiB/s, 6 MiB burst)",
                n,
                limited=True,
            )
            rx.limits("none")
        if "outage" in parts:
            bench.outage()
    finally:
        rx.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n(total {time.monotonic() - started:.0f} s)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({**bench.figures, "failures": bench.failures}, fh, indent=2)
    if bench.failures:
        print("our sink lost or duplicated lines:")
        for failure in bench.failures:
            print(f"  - {failure}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""CloudWatch benchmark: what the CloudWatch sink costs the caller, and what it delivers.

moto's standalone server (a real CloudWatch Logs API emulator) runs in its own
interpreter, so that its request handling never shares a GIL with the program
measured; every measured program runs in a fresh interpreter of its own too.

1. Caller cost per record with the CloudWatch sink attached, against the
   file-only setup (target <= 1.3x, as for Loki): sending to a stub that answers
   every call with success (``ours_stub``: our own cost, caller and worker), and to
   moto (``ours_cloudwatch``: moto's CPU, ~30 us per event, shares the machine's
   cores with the program measured, which CloudWatch's does not). The variants
   alternate round by round; the figure is the median over rounds of the best of
   repeats. The worker thread's time competes for the GIL, and is counted.
2. Delivered events/s from one process: N lines as fast as possible, then
   ``session.close(timeout_s=120)``; N / (first call -> close returned with all N
   sent), and the events read back from moto (must be N, in order). moto stores
   events in pure Python: the figure is a floor for the sink, not CloudWatch's.
   Also the time to the first stored event, which includes importing botocore,
   building the client and creating the group and stream (a one-off on the
   worker, kept out of the caller-cost loop of 1).
3. ``setup_logging`` with the sink: its wall time, the connections made to the
   endpoint before it returned (must be 0), and whether botocore was imported
   (must not be: it is imported on the worker, with the first batch).

Timings are printed, never asserted. The exit status is non-zero only when
something crashed or when the sink lost, duplicated or reordered a line.

Usage::

    python benchmarks/bench_cloudwatch.py            # full run (~2 min)
    python benchmarks/bench_cloudwatch.py --smoke    # ~15 s, for CI (no verdicts)
    python benchmarks/bench_cloudwatch.py --json figures.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from _workload import FIELDS, extras

HERE = os.path.abspath(__file__)
#: The same standard fields as bench_core.py.
COST_VARIANTS = ("file_only", "ours_cloudwatch", "ours_stub")
REGION = "us-west-2"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
#: A stand-in for CloudWatch that stores nothing: it answers every call with ``{}``
#: (success), so that the caller-cost figure does not include moto's CPU, which on
#: a small machine competes with the program measured (CloudWatch's does not).
STUB_SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""
MOTO_SERVER = """
import logging, sys
logging.getLogger("werkzeug").setLevel(logging.ERROR)
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
"""


def _extras() -> dict[str, Any]:
    return extras()


def _session(variant: str, url: str, stream: str, spool: str, **setup: Any) -> Any:
    from aind_log_utils import setup_logging

    sinks = []
    if variant != "file_only":
        from aind_log_utils._cloudwatch import CloudWatchSink

        sinks.append(
            CloudWatchSink(program="bench", log_stream=stream, endpoint_url=url, spool_dir=spool)
        )
    options: dict[str, Any] = {**FIELDS, **setup}
    return setup_logging(
        console=False, send_start_log=False, handle_sigterm=False, sinks=sinks, **options
    )


def cost_worker(variant: str, url: str, n: int, repeats: int) -> float:
    """Best ns per record over ``repeats`` runs of ``n`` records."""
    import logging

    stream = f"cost-{os.getpid()}"
    with tempfile.TemporaryDirectory() as spool:
        session = _session(variant, url, stream, spool, log_file=os.devnull)
        log = logging.getLogger("bench")
        extras = _extras()
        for _ in range(min(n, 2000)):
            log.info("frame %d acquired", 1, extra=extras)
        # The first batch imports botocore and builds the client on the worker: a
        # one-off (see "first event" in the delivery figures), kept out of the loop.
        session.flush(timeout_s=60)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter_ns()
            for i in range(n):
                log.info("frame %d acquired", i, extra=extras)
            best = min(best, (time.perf_counter_ns() - start) / n)
        session.close(timeout_s=60)
    return best


def delivery_worker(url: str, n: int) -> dict[str, Any]:
    """Log ``n`` lines, close, and read them back from moto."""
    import logging

    stream = f"delivery-{os.getpid()}"
    with tempfile.TemporaryDirectory() as tmp:
        session = _session("ours_cloudwatch", url, stream, tmp, log_file=os.devnull)
        (sink,) = [s for s in session.sinks if type(s).__name__ == "CloudWatchSink"]
        log = logging.getLogger("bench")
        start = time.perf_counter()
        log.info("line %07d of the delivery benchmark", 0)
        session.flush(timeout_s=60)  # the first event: import, client, group, stream
        first = time.perf_counter() - start
        for i in range(1, n):
            log.info("line %07d of the delivery benchmark", i)
        logged = time.perf_counter() - start
        session.close(timeout_s=120)
        elapsed = time.perf_counter() - start
        counters = sink.counters()
    import boto3  # only now: botocore's import is part of the first event's time

    client = boto3.client("logs", endpoint_url=url, region_name=REGION)
    seqs: list[int] = []
    token = None
    while True:
        args: dict[str, Any] = {"logGroupName": "aind/internal_logs", "logStreamName": stream}
        args.update({"nextToken": token} if token else {"startFromHead": True})
        page = client.get_log_events(**args)
        if not page["events"] or page["nextForwardToken"] == token:
            break
        for event in page["events"]:
            message = json.loads(event["message"])["message"]
            seqs.append(int(message.split()[1]))
        token = page["nextForwardToken"]
    return {
        "n": n,
        "logged_s": logged,
        "delivered_s": elapsed,
        "events_per_s": n / elapsed,
        "first_event_s": first,
        "sent": counters["sent"],
        "read_back": len(seqs),
        "in_order_once": seqs == list(range(n)),
    }


def setup_worker(n_runs: int) -> dict[str, Any]:
    """setup_logging with the sink against a port that counts connections."""
    listener = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    connections = 0

    def accept() -> None:
        nonlocal connections
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            connections += 1
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    times, before_return = [], []
    imported = False
    with tempfile.TemporaryDirectory() as spool:
        for run in range(n_runs):
            start = time.perf_counter()
            session = _session("ours_cloudwatch", url, f"setup-{run}", spool, log_file=False)
            times.append(time.perf_counter() - start)
            before_return.append(connections)
            imported = imported or "botocore" in sys.modules
            session.close(timeout_s=0)
    listener.close()
    return {
        "setup_ms": statistics.median(times) * 1000,
        "connections_during_setup": max(before_return),
        "botocore_imported_at_setup": imported,
    }


def _spawn(args: list[str], env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, HERE, *args], capture_output=True, text=True, check=True, timeout=900,
        env=env,
    )  # fmt: skip
    return out.stdout.strip().splitlines()[-1]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--delivery-n", type=int, default=100_000)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny run for CI; prints figures, no verdict"
    )
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    if args.worker == "cost":
        print(cost_worker(args.variant, args.url, args.n, args.repeats))
        return 0
    if args.worker == "delivery":
        print(json.dumps(delivery_worker(args.url, args.n)))
        return 0
    if args.worker == "setup":
        print(json.dumps(setup_worker(args.n)))
        return 0
    if args.smoke:
        args.n, args.repeats, args.rounds, args.delivery_n = 2000, 2, 1, 5000

    env = {**os.environ, **AWS_ENV}
    servers = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for code in (MOTO_SERVER, STUB_SERVER)
    ]
    try:
        url, stub_url = (f"http://127.0.0.1:{int(p.stdout.readline())}" for p in servers)  # type: ignore[union-attr]
        results: dict[str, list[float]] = {v: [] for v in COST_VARIANTS}
        for _ in range(args.rounds):
            for variant in COST_VARIANTS:
                results[variant].append(float(_spawn(
                    ["--worker", "cost", "--variant", variant,
                     "--url", stub_url if variant == "ours_stub" else url,
                     "--n", str(args.n), "--repeats", str(args.repeats)], env,
                )))  # fmt: skip
        med = {k: statistics.median(v) for k, v in results.items()}
        delivery = json.loads(
            _spawn(["--worker", "delivery", "--url", url, "--n", str(args.delivery_n)], env)
        )
        setup = json.loads(_spawn(["--worker", "setup", "--n", "5"], env))
    finally:
        for server in servers:
            server.kill()
            server.wait(timeout=10)

    ratios = {
        "ours_stub / file_only (target <= 1.3)": med["ours_stub"] / med["file_only"],
        "ours_cloudwatch / file_only (moto on the same CPUs)": med["ours_cloudwatch"]
        / med["file_only"],
    }
    print(f"{'variant':<20} ns/record (median of {args.rounds} rounds, best of {args.repeats})")
    for k, v in med.items():
        print(f"{k:<20} {v:10.0f}")
    for k, v in ratios.items():
        print(f"{k:<52} {v:6.2f}x")
    print()
    print(
        f"delivered: {delivery['n']} events in {delivery['delivered_s']:.2f} s "
        f"({delivery['events_per_s']:,.0f} events/s; logging took {delivery['logged_s']:.2f} s; "
        f"the first event, with botocore's import and the stream's creation, "
        f"{delivery['first_event_s']:.2f} s); "
        f"read back {delivery['read_back']}, in order and once: {delivery['in_order_once']}"
    )
    print(
        f"setup_logging with the sink: {setup['setup_ms']:.1f} ms, "
        f"connections before it returned: {setup['connections_during_setup']}, "
        f"botocore imported: {setup['botocore_imported_at_setup']}"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"ns_per_record": med, "ratios": ratios, "delivery": delivery, "setup": setup},
                fh,
                indent=2,
            )
    ok = delivery["in_order_once"] and delivery["sent"] == delivery["n"]
    ok = ok and setup["connections_during_setup"] == 0 and not setup["botocore_imported_at_setup"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

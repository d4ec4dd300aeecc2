"""Run directories across real processes: shared runs, SIGKILL, exit without closing."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import notata
import pytest

from aind_log_utils._rundir import RunDirectory, RunReader, list_runs
from aind_log_utils.testing import read_jsonl

DEADLINE_S = 60.0


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def start(tmp_path: Path, name: str, body: str, *args: str) -> subprocess.Popen[str]:
    script = tmp_path / f"{name}.py"
    script.write_text(textwrap.dedent(body))
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def wait_for(predicate: object, what: str) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


WORKER = """
import logging, sys, time
from pathlib import Path
from aind_log_utils import RunDirectory

base, worker, rows, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
with RunDirectory("shared", base_dir=base, resume=True) as run:
    print("ready", flush=True)
    deadline = time.monotonic() + 60
    while not go.exists():  # start together, so the writes really interleave
        if time.monotonic() > deadline:
            raise SystemExit("no go signal")
        time.sleep(0.005)
    run.log_hyperparams({f"hp_{worker}": int(worker)})
    for step in range(rows):
        run.log_metrics({"value": step, "worker": int(worker)}, step=step)
        if step % 10 == 0:
            run.log_artifact(f"ckpt_{worker}_{step}", f"/ckpt/{worker}/{step}.pt", kind="checkpoint")
            run.meta(**{f"progress_{worker}": step})
            logging.getLogger("worker").info("worker %s step %d", worker, step)
"""


def test_two_processes_share_one_run_and_lose_nothing(tmp_path: Path) -> None:
    rows = 200
    with RunDirectory("shared", base_dir=tmp_path, params={"n": rows}):
        pass
    go = tmp_path / "go"
    procs = [
        start(tmp_path, f"worker{i}", WORKER, str(tmp_path), str(i), str(rows), str(go))
        for i in (1, 2)
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    go.touch()
    for proc in procs:
        _, err = proc.communicate(timeout=DEADLINE_S)
        assert proc.returncode == 0, err

    reader = RunReader(tmp_path / "log_shared")
    metric_rows = reader.metrics()
    for worker in (1, 2):
        steps = sorted(r["step"] for r in metric_rows if r["metrics"]["worker"] == worker)
        assert steps == list(range(rows))
    assert len(metric_rows) == 2 * rows
    names = {p["name"] for p in reader.artifact_pointers}
    assert names == {f"ckpt_{w}_{s}" for w in (1, 2) for s in range(0, rows, 10)}
    assert reader.hyperparams == {"hp_1": 1, "hp_2": 2}
    meta = reader.meta
    assert meta["progress_1"] == rows - 10 and meta["progress_2"] == rows - 10
    assert meta["status"] == "complete" and meta["resume_count"] == 2
    assert reader.params == {"n": rows}
    # every line of both logs is whole
    records = read_jsonl(reader.path / "log.jsonl")
    assert len([r for r in records if r["message"].startswith("worker ")]) == 2 * rows // 10
    text = (reader.path / "log.txt").read_text().splitlines()
    assert len([line for line in text if " INFO worker " in line]) == 2 * rows // 10
    assert notata.LogReader(reader.path).meta["status"] == "complete"


KILLED = """
import logging, sys
from aind_log_utils import RunDirectory

run = RunDirectory("killed", base_dir=sys.argv[1], params={"dt": 0.5})
run.json("early", {"ok": True})
step = 0
while True:
    run.log_metrics({"x": float(step)}, step=step)
    logging.getLogger("sim").info("step %d", step)
    if step == 100:
        print("ready", flush=True)
    step += 1
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_sigkill_mid_run_is_readable_and_shows_crashed(tmp_path: Path) -> None:
    proc = start(tmp_path, "killed", KILLED, str(tmp_path))
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    path = tmp_path / "log_killed"
    assert RunReader(path).status == "running"  # alive: not crashed
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=DEADLINE_S)
    assert proc.returncode == -signal.SIGKILL

    reader = RunReader(path)
    assert reader.status == "crashed" and reader.crashed
    assert reader.recorded_status == "initialized"  # the file keeps notata's values
    assert reader.params == {"dt": 0.5} and reader.load_json("early") == {"ok": True}
    steps = [row["step"] for row in reader.metrics()]
    assert steps[:101] == list(range(101))
    assert [r.summary()["status"] for r in list_runs(tmp_path)] == ["crashed"]
    theirs = notata.LogReader(path)
    assert theirs.meta["status"] == "initialized" and theirs.load_json("early") == {"ok": True}
    # a crashed run can be resumed and finished
    with RunDirectory("killed", base_dir=tmp_path, resume=True) as run:
        run.log_metrics({"x": -1.0}, step=10_000)
    assert RunReader(path).status == "complete"


FORGOTTEN = """
import sys
from aind_log_utils import RunDirectory

run = RunDirectory("forgotten", base_dir=sys.argv[1])
run.log_metrics({"loss": 0.1}, step=1)
"""


def test_exit_without_closing_marks_failed(tmp_path: Path) -> None:
    proc = start(tmp_path, "forgotten", FORGOTTEN, str(tmp_path))
    _, err = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 0, err
    meta = json.loads((tmp_path / "log_forgotten" / "metadata.json").read_text())
    assert meta["status"] == "failed"
    assert meta["failure_reason"] == "the process exited without closing the run"
    last = read_jsonl(tmp_path / "log_forgotten" / "log.jsonl")[-1]
    assert last["status"] == "fail" and last["last_metrics"] == {"loss": 0.1}


SESSION_AND_RUN = """
import logging, sys
from aind_log_utils import RunDirectory, setup_logging

setup_logging("prog", console=False, log_file=sys.argv[2])
with RunDirectory("with_session", base_dir=sys.argv[1]) as run:
    logging.getLogger("prog").info("working")
    run.log_metrics({"loss": 0.2}, step=7)
"""


def test_session_stop_line_at_exit_carries_the_runs_last_metrics(tmp_path: Path) -> None:
    log_file = tmp_path / "session.jsonl"
    proc = start(tmp_path, "session", SESSION_AND_RUN, str(tmp_path), str(log_file))
    _, err = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 0, err
    stops = [r for r in read_jsonl(log_file) if r["message"] == "Stopping"]
    assert len(stops) == 1
    assert stops[0]["last_metrics"] == {"loss": 0.2} and stops[0]["status"] == "success"
    run_messages = [r["message"] for r in read_jsonl(tmp_path / "log_with_session" / "log.jsonl")]
    assert "working" in run_messages

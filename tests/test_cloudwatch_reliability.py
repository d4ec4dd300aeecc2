"""CloudWatch with real programs: every way a program ends, an outage at exit, the 0.2.x defaults."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

pytest.importorskip("boto3")
pytest.importorskip("moto.server")

from test_cloudwatch import (  # the moto server, the AWS environment, reading back
    GROUP,
    MotoServer,
    aws_env,
    file_lines,
    moto,
    new_stream,
    read_events,
)

__all__ = ["aws_env", "moto"]  # fixtures, used by name

PROGRAM = """
import logging, sys
from aind_log_utils import setup_logging
from aind_log_utils._cloudwatch import CloudWatchSink
url, log_path, spool, stream, n = sys.argv[1:6]
sink = CloudWatchSink(program="rel", log_stream=stream, endpoint_url=url, spool_dir=spool,
                      batch_wait_s=0.05, retry_start_s=0.05, retry_max_s=0.5, timeout_s=2.0)
setup_logging("rel", console=False, log_file=log_path, sinks=[sink], flush_timeout_s=5)
log = logging.getLogger("prog")
for i in range(int(n)):
    log.info("line %d", i)
{ending}
"""


def run(moto: MotoServer, tmp_path: Path, stream: str, ending: str = "", n: int = 3000,
        name: str = "prog") -> tuple[subprocess.CompletedProcess[str], Path]:  # fmt: skip
    script = tmp_path / f"{name}.py"
    script.write_text(PROGRAM.format(ending=textwrap.dedent(ending)))
    log_path = tmp_path / f"{name}.jsonl"
    args = [moto.url, str(log_path), str(tmp_path / "spool"), stream, str(n)]
    done = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=120
    )
    return done, log_path


@pytest.mark.parametrize(
    ("ending", "code"),
    [("", 0), ("sys.exit(4)", 4), ("raise RuntimeError('boom')", 1)],
    ids=["normal-exit", "sys-exit", "uncaught-exception"],
)
def test_nothing_lost_at_exit(moto: MotoServer, tmp_path: Path, ending: str, code: int) -> None:
    stream = new_stream()
    done, log_path = run(moto, tmp_path, stream, ending)
    assert done.returncode == code, done.stderr
    messages = [e["message"] for e in read_events(moto.url, stream)]
    assert messages == file_lines(log_path)  # every line, in order, once
    assert orjson.loads(messages[-1])["message"] == "Stopping"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
def test_a_forked_child_delivers_with_a_client_of_its_own(moto: MotoServer, tmp_path: Path) -> None:
    stream = new_stream()
    ending = """
    import os
    pid = os.fork()
    if pid == 0:
        for i in range(300):
            log.info("child %d", i)
        sys.exit(0)
    os.waitpid(pid, 0)
    """
    done, log_path = run(moto, tmp_path, stream, ending, n=1000)
    assert done.returncode == 0, done.stderr
    messages = [e["message"] for e in read_events(moto.url, stream)]
    assert Counter(messages) == Counter(file_lines(log_path))  # both processes, once each
    assert sum('"child ' in m for m in messages) == 300


def test_an_outage_at_exit_is_bounded_and_replayed_by_the_next_start(
    moto: MotoServer, tmp_path: Path
) -> None:
    stream = new_stream()
    moto.stop()
    try:
        started = time.monotonic()
        done, first = run(moto, tmp_path, stream, n=3000, name="first")
        elapsed = time.monotonic() - started
    finally:
        moto.start()
    assert done.returncode == 0, done.stderr
    assert elapsed < 15  # bounded by flush_timeout_s (5 s), not by the absent service
    assert list((tmp_path / "spool").iterdir())  # what could not go is on disk
    done, second = run(moto, tmp_path, stream, n=5, name="second")
    assert done.returncode == 0, done.stderr
    expected = Counter(file_lines(first)) + Counter(file_lines(second))
    assert Counter(e["message"] for e in read_events(moto.url, stream)) == expected


def _wired() -> bool:
    from aind_log_utils import _network

    return "CloudWatchSink" in inspect.getsource(_network)


WIRED = pytest.mark.skipif(
    not _wired(), reason="setup_logging does not build the CloudWatch sink yet (_network.py)"
)

DEFAULTS_PROGRAM = """
import logging
from aind_log_utils import setup_logging
session = setup_logging("capsule", console=False, log_file=False, send_start_log=False)
cw = [s for s in session.sinks if type(s).__name__ == "CloudWatchSink"]
print(len(cw), *[f"{s.log_group} {s.log_stream}" for s in cw], flush=True)
logging.getLogger("capsule").info("from a capsule")
session.close(timeout_s=10)
"""


@WIRED
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CO_CAPSULE_ID": "cap-1"}, "1 aind/internal_logs cap-1"),
        ({"CO_CAPSULE_ID": "cap-1", "AIND_LOG_CLOUDWATCH": "false"}, "0"),
        ({}, "0"),
        ({"AIND_LOG_CLOUDWATCH": "true", "AIND_CLOUDWATCH_LOG_STREAM": "s-2"}, "1 aind/internal_logs s-2"),
    ],
    ids=["code-ocean", "code-ocean-off", "elsewhere", "asked-for"],
)  # fmt: skip
def test_on_by_default_inside_code_ocean(
    moto: MotoServer, tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    options = orjson.dumps({"endpoint_url": moto.url, "spool_dir": str(tmp_path / "spool"),
                            "batch_wait_s": 0.05}).decode()  # fmt: skip
    child_env = {**os.environ, **env, "AIND_CLOUDWATCH_OPTIONS": options}
    done = subprocess.run(
        [sys.executable, "-c", DEFAULTS_PROGRAM], env=child_env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected
    if expected != "0":
        stream = expected.rsplit(maxsplit=1)[-1]
        events = read_events(moto.url, stream, GROUP)
        assert [orjson.loads(e["message"])["message"] for e in events][-1] == "from a capsule"

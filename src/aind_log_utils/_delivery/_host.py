"""The sender process: one network sink, run for a parent program (see :mod:`._link`).

``python -m aind_log_utils._delivery._host <reply fd>`` reads frames on stdin
(:mod:`._wire`). The first is ``start``: it names the sink class and its
arguments, and the sink is built here with ``delivery="thread"``, so everything
the sink does (encoding, the delivery engine, retries, the spool) happens in this
process, on this process's GIL. Each record frame goes to the sink's
``host_records`` (all those of one read at once); ``flush``, ``stats`` and ``close`` are answered on the reply fd.

When stdin ends (the parent closed it, exited or was killed) the sink is closed
within its flush timeout: what could not be sent is spooled, then this process
exits. It ignores SIGINT (a Ctrl-C in a terminal is for the parent, which closes
the pipe when it is done) and closes the sink on SIGTERM.
"""

from __future__ import annotations

import importlib
import os
import pickle
import signal
import sys
import time
from typing import Any

import orjson

from .._diagnostics import diagnose
from ._segment import write_all
from ._wire import split_frames

__all__ = ["build_sink", "main"]

_READ = 1 << 20
#: After a read smaller than this, wait GATHER_S for more before handling it.
_GATHER_BELOW = 512 * 1024
#: How long a small read waits for more (records reach the engine this much later).
GATHER_S = 0.02
#: The sender runs this much nicer than the program it sends for.
NICENESS = 10


class _Terminated(Exception):
    pass


def build_sink(spec: tuple[str, str, tuple[Any, ...], dict[str, Any]]) -> Any:
    """Build a sink from its spec ``(module, class name, args, kwargs)``, in thread mode."""
    module, name, args, kwargs = spec
    cls = getattr(importlib.import_module(module), name)
    return cls(*args, **{**kwargs, "delivery": "thread"})


def _reply(fd: int, message: dict[str, Any]) -> None:
    write_all(fd, orjson.dumps(message, default=str) + b"\n")


def _answer(sink: Any, message: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Handle one control message; returns the answer and whether to stop."""
    op = message.get("op")
    answer: dict[str, Any] = {"id": message.get("id"), "ok": True}
    stop = False
    if op == "flush":
        answer["ok"] = bool(sink.flush(message.get("timeout")))
    elif op == "close":
        sink.close(message.get("timeout"))
        stop = True
    elif op != "stats":
        answer["ok"] = False
    answer["counters"] = sink.counters()
    return answer, stop


def _read_ready() -> bytes:
    """What the pipe holds now, without waiting (b"" when nothing)."""
    try:
        os.set_blocking(0, False)
        try:
            return os.read(0, _READ)
        finally:
            os.set_blocking(0, True)
    except (BlockingIOError, InterruptedError):
        return b""


def serve(sink: Any, reply_fd: int, data: bytearray) -> None:
    """Feed record frames to ``sink`` and answer control frames until stdin ends.

    ``data`` holds what was read after the ``start`` frame.
    """
    many = sink.host_records
    engine = sink.engine
    while True:
        frames, pos = split_frames(data)
        del data[:pos]
        records: list[bytes] = []
        for control, payload in frames:
            if not control:
                records.append(payload)
                continue
            many(records)  # everything before the message, first
            records = []
            answer, stop = _answer(sink, pickle.loads(payload))
            _reply(reply_fd, answer)
            if stop:
                return
        if records:
            many(records)
        engine.write_spool_buffer()  # all input handled: what was spooled goes to disk
        chunk = os.read(0, _READ)
        if not chunk:
            sink.close()
            return
        data += chunk
        if len(chunk) < _GATHER_BELOW:
            # A busy program writes every 64 KiB: let a few writes gather in the
            # pipe, so each wake-up (and each hand-over of this process's GIL to
            # its delivery thread) handles hundreds of records, not one write's.
            time.sleep(GATHER_S)
            more = _read_ready()
            if more:
                data += more


def main(argv: list[str] | None = None) -> int:
    """Run the sender: build the sink from the first frame, then serve until stdin ends."""
    args = sys.argv[1:] if argv is None else argv
    reply_fd = int(args[0])
    # Stray prints must never corrupt the replies: stdout goes where stderr goes.
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Delivery is background work: where CPUs are short, the program that logs
    # (the experiment, the pipeline) goes first; the sender catches up in the gaps.
    try:
        os.nice(NICENESS)
    except OSError:
        pass

    def _term(signum: int, frame: Any) -> None:
        raise _Terminated

    signal.signal(signal.SIGTERM, _term)
    data = bytearray()
    sink: Any = None
    try:
        while sink is None:
            chunk = os.read(0, _READ)
            if not chunk:
                return 0
            data += chunk
            frames, _ = split_frames(data)
            if frames:
                control, payload = frames[0]
                if not control:
                    diagnose("host", "aind-log-utils sender: the first frame is not 'start'")
                    return 2
                sink = build_sink(pickle.loads(payload)["spec"])
                del data[: 4 + len(payload)]
                _reply(reply_fd, {"id": 0, "ok": True, "ready": True})
        serve(sink, reply_fd, data)
    except _Terminated:
        if sink is not None:
            sink.close()
    except Exception as exc:
        diagnose("host", f"aind-log-utils sender stopped: {type(exc).__name__}: {exc}")
        if sink is not None:
            sink.close()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A started sender process as the program sees it: its pipes and its answers.

:class:`~._link.ProcessLink` decides what goes down the pipe and when; this
module starts the process (:mod:`._host`), sends it its first frame, reads what
it answers on a private pipe, and reaps it when it ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import orjson

from ._segment import write_all
from ._wire import control_frame

__all__ = [
    "HOST_ARGS",
    "SenderProcess",
    "merge_counters",
    "process_delivery_supported",
    "sender_path",
]

#: How the sender is started: ``sys.executable`` with these arguments and its reply fd.
HOST_ARGS = ("-m", "aind_log_utils._delivery._host")
_F_SETPIPE_SZ = 1031
_PIPE_BYTES = 1 << 20


def process_delivery_supported() -> bool:
    """True where a sender process can run: POSIX, a real interpreter on disk."""
    exe = sys.executable
    return (
        os.name == "posix"
        and bool(exe)
        and os.path.exists(exe)
        and not getattr(sys, "frozen", False)
    )


def sender_path(package_file: str) -> str:
    """The sender's ``PYTHONPATH``: this program's ``sys.path``, then this package's root.

    The program's entries keep their order (the standard library before
    site-packages, as here); the package's root is added when the program
    imported it from elsewhere. A program that found its modules through
    ``sys.path`` changes (common in capsules) has the sender import the very
    same ones.
    """
    entries = [p for p in sys.path if p and os.path.isdir(p)]
    entries.append(os.path.dirname(os.path.dirname(os.path.abspath(package_file))))
    entries += (os.environ.get("PYTHONPATH") or "").split(os.pathsep)
    return os.pathsep.join(dict.fromkeys(p for p in entries if p))


def merge_counters(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Add two counter dicts (numbers add, reason dicts add per reason)."""
    out = dict(a)
    for key, value in b.items():
        if isinstance(value, dict):
            merged = dict(out.get(key) or {})
            for reason, count in value.items():
                merged[reason] = merged.get(reason, 0) + count
            out[key] = merged
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = out.get(key, 0) + value
        else:
            out.setdefault(key, value)
    return out


class SenderProcess:
    """One sender process: the write end of its stdin, and the answers it sends back.

    Building one starts the process (an exception, with nothing left open, if it
    cannot start); :meth:`start` then sends the sink's spec and starts reading
    its answers.

    Args:
        name: the sink's name (the reader thread's name).
        on_ready: called (on the reader thread) when the sender says it is ready.
        on_end: called (on the reader thread) once the sender is gone and reaped.
    """

    def __init__(self, name: str, on_ready: Callable[[], None], on_end: Callable[[], None]) -> None:
        import aind_log_utils

        self.name = name
        self._on_ready = on_ready
        self._on_end = on_end
        reply_r, reply_w = os.pipe()
        try:
            env = {**os.environ, "PYTHONPATH": sender_path(aind_log_utils.__file__)}
            self.proc = subprocess.Popen(
                [sys.executable, *HOST_ARGS, str(reply_w)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,  # never hold a pipe the program's parent reads
                bufsize=0,
                pass_fds=(reply_w,),
                start_new_session=True,
                env=env,
            )
        except BaseException:
            os.close(reply_r)
            os.close(reply_w)
            raise
        os.close(reply_w)
        assert self.proc.stdin is not None
        #: Our end of the sender's stdin (non-blocking once started; -1 once closed).
        self.fd = self.proc.stdin.fileno()
        self._reply_fd = reply_r
        #: The reply pipe is still ours to close (not yet closed by the reader).
        self._reply_open = True
        try:
            import fcntl  # POSIX only, as process delivery is

            fcntl.fcntl(self.fd, _F_SETPIPE_SZ, _PIPE_BYTES)
        except (ImportError, OSError):
            pass  # the default pipe (64 KiB) works, with more writes
        self._replied = threading.Condition(threading.Lock())
        self._replies: dict[int, dict[str, Any]] = {}
        self._next_id = 0
        self._gone = False
        #: The counters of the sender's latest answer.
        self.last: dict[str, Any] = {}

    def start(self, spec: tuple[str, str, tuple[Any, ...], dict[str, Any]]) -> None:
        """Send the ``start`` frame, make the pipe non-blocking, read the answers.

        Raises:
            OSError: the sender did not take its first frame (its reply pipe is
                then closed).
        """
        try:
            write_all(self.fd, control_frame({"op": "start", "spec": spec}))
        except OSError:
            self._close_reply_fd()
            raise
        os.set_blocking(self.fd, False)
        threading.Thread(
            target=self._read_replies, name=f"aind-log-{self.name}-reply", daemon=True
        ).start()

    def request(self, op: str, **fields: Any) -> tuple[int, bytes]:
        """A control message's id and frame (the caller puts it in the pipe)."""
        with self._replied:
            self._next_id += 1
            rid = self._next_id
        return rid, control_frame({"op": op, "id": rid, **fields})

    def answer(self, rid: int, timeout_s: float) -> dict[str, Any] | None:
        """The answer to request ``rid``; None if none came in time or the sender is gone."""
        with self._replied:
            self._replied.wait_for(lambda: rid in self._replies or self._gone, timeout_s)
            return self._replies.pop(rid, None)

    def close_pipe(self) -> None:
        """Close our end of the sender's stdin (it then sees the end of its input)."""
        self.fd = -1
        stdin = self.proc.stdin
        if stdin is not None:
            try:
                stdin.close()
            except OSError:
                pass

    def forget(self) -> None:
        """In a forked child: close this process's copies of the parent's sender's pipes."""
        # A fresh lock: the parent's reader may have held the old one at the fork,
        # and it would stay held here.
        self._replied = threading.Condition(threading.Lock())
        self.close_pipe()
        self._close_reply_fd()

    def _close_reply_fd(self) -> None:
        # Once only: a closed fd's number may since name another file.
        with self._replied:
            was_open, self._reply_open = self._reply_open, False
        if was_open:
            try:
                os.close(self._reply_fd)
            except OSError:
                pass

    def wait(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the sender to exit."""
        try:
            self.proc.wait(max(0.1, timeout_s))
        except subprocess.TimeoutExpired:
            pass  # it spools what it holds at its own deadline, then exits

    def _read_replies(self) -> None:
        with os.fdopen(self._reply_fd, "rb", closefd=False) as stream:
            for line in stream:
                try:
                    message = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if message.get("ready"):
                    self._on_ready()
                    continue
                with self._replied:
                    self.last = message.get("counters") or self.last
                    self._replies[message.get("id", -1)] = message
                    self._replied.notify_all()
        try:
            self.proc.wait(5.0)  # reap it: a zombie would look alive to the spool's claims
        except subprocess.TimeoutExpired:
            pass
        with self._replied:
            self._gone = True
            self._replied.notify_all()
        self._close_reply_fd()
        self._on_end()

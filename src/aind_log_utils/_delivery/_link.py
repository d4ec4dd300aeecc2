"""A sink's sender process, and the caller's end of the pipe to it.

Why a process: a delivery worker THREAD shares the GIL with the program that
logs. Each time it needs the GIL back (after a gzip, a send, a receive, a timed
wait) while the program is busy logging, the two threads trade it through
futex wake-ups and forced switches, and the program pays for every one: on a
2-core VM that cost twice what the file sink does per record. With
``delivery="process"`` (the default where it works), a sink hands each record to
a :class:`ProcessLink`: the caller's thread appends a few bytes to a buffer and,
every 64 KiB, writes the buffer to a non-blocking pipe. A sender process (see
:mod:`._host`) builds the same sink in thread mode and does everything else
(encoding, batching, retries, the spool) on its own GIL.

What this changes for delivery:

- A SIGKILL of the program loses at most the unwritten buffer (< 64 KiB, and
  never older than :data:`WRITE_EVERY_S`): what reached the pipe is read,
  delivered or spooled by the sender, which closes its sink when the pipe ends.
- When the sender cannot be started, or dies, the same sink is built in this
  process (thread mode) and takes the records still buffered here, and everything
  after. Records the dead sender had not yet sent are lost, except what it spooled
  (replayed by the local sink, as files of a gone process).
- When the pipe stays full (the sender is starved of CPU), the buffer grows up to
  ``max_buffer_bytes``; beyond it records go to the local sink (they may then
  reach the server before older ones still in the pipe).
- After ``fork`` the child starts a sender of its own on its first record and
  never resends the parent's.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from .._diagnostics import diagnose
from ._lifecycle import manage, release
from ._segment import write_all
from ._wire import HEADER, control_frame, split_frames

__all__ = ["WRITE_AT_BYTES", "WRITE_EVERY_S", "ProcessLink", "process_delivery_supported"]

#: The caller writes the buffer to the pipe once it holds this much.
WRITE_AT_BYTES = 64 * 1024
#: The link's thread writes a smaller buffer after at most this long.
WRITE_EVERY_S = 0.1
#: How the sender is started: ``sys.executable`` with these arguments and its reply fd.
HOST_ARGS = ("-m", "aind_log_utils._delivery._host")
#: How long a flush or close waits for the sender beyond the timeout it gave it.
_GRACE_S = 1.0
#: How long stats() waits for the sender's counters.
_STATS_WAIT_S = 2.0
_F_SETPIPE_SZ = 1031
_PIPE_BYTES = 1 << 20

_LIVE, _UNSPAWNED, _LOCAL, _CLOSED = "live", "unspawned", "local", "closed"
_pack_header = HEADER.pack


def process_delivery_supported() -> bool:
    """True where a sender process can run: POSIX, a real interpreter on disk."""
    exe = sys.executable
    return (
        os.name == "posix"
        and bool(exe)
        and os.path.exists(exe)
        and not getattr(sys, "frozen", False)
    )


def _sender_path(package_file: str) -> str:
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


class ProcessLink:
    """The caller's end of a sink's sender process; stands where the engine would.

    Args:
        name: the sink's name (thread names, diagnostics).
        spec: how to build the sink: ``(module, class name, args, kwargs)``; the
            sender (and the local fallback) builds it with ``delivery="thread"``.
        spool_dir: the sink's spool directory (for the record).
        flush_timeout_s: the default bound of :meth:`flush` and :meth:`close`.
        max_buffer_bytes: the most this side buffers while the pipe is full.
    """

    def __init__(
        self,
        name: str,
        spec: tuple[str, str, tuple[Any, ...], dict[str, Any]],
        *,
        spool_dir: Path,
        flush_timeout_s: float,
        max_buffer_bytes: int,
    ) -> None:
        self.name = name
        self.spool_dir = spool_dir
        self._spec = spec
        self._flush_timeout_s = flush_timeout_s
        self._max_buffer = max(max_buffer_bytes, WRITE_AT_BYTES)
        self._local_sink: Any = None
        self._final: dict[str, Any] = {}
        self._closed = False
        self._close_lock = threading.Lock()
        #: Changes whenever another process (a new sender, or this one) starts
        #: receiving: what the sink told the one before, this one does not know.
        self.generation = 0
        self._init_state()
        self._atexit_hook = manage(self)
        with self._lock:
            self._spawn()

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._request_lock = threading.Lock()
        self._replied = threading.Condition(threading.Lock())
        self._replies: dict[int, dict[str, Any]] = {}
        self._last: dict[str, Any] = {}
        self._buf = bytearray()
        self._write_at = WRITE_AT_BYTES
        self._ready = False
        self._state = _UNSPAWNED
        self._proc: subprocess.Popen[bytes] | None = None
        self._fd = -1
        self._reply_fd = -1
        self._gone = False
        self._next_id = 0
        self._tick = threading.Event()
        self._errors = 0
        self._dropped: dict[str, int] = {}

    def _close_pipe(self) -> None:
        """Close our end of the sender's stdin (it then sees the end of its input)."""
        proc, self._fd = self._proc, -1
        if proc is not None and proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass

    def _reinit_after_fork(self) -> None:
        # The parent's sender, pipe and buffered records are the parent's.
        self._close_lock = threading.Lock()
        self._close_pipe()
        if self._reply_fd >= 0 and self._state is _LIVE:
            try:
                os.close(self._reply_fd)
            except OSError:
                pass
        state, local = self._state, self._local_sink
        self._init_state()
        if state in (_LOCAL, _CLOSED):
            self._state = state  # the local sink's engine re-arms itself after fork
            self._local_sink = local

    # ---- the sender process --------------------------------------------------
    def _spawn(self) -> None:
        """Start the sender (under the lock); on failure, run the sink locally."""
        import aind_log_utils

        self.generation += 1
        reply_r, reply_w = os.pipe()
        try:
            env = {**os.environ, "PYTHONPATH": _sender_path(aind_log_utils.__file__)}
            proc = subprocess.Popen(
                [sys.executable, *HOST_ARGS, str(reply_w)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,  # never hold a pipe the program's parent reads
                bufsize=0,
                pass_fds=(reply_w,),
                start_new_session=True,
                env=env,
            )
        except Exception as exc:
            os.close(reply_r)
            os.close(reply_w)
            diagnose(
                f"{self.name}:spawn", f"{self.name}: no sender process ({exc}); sending from here"
            )
            self._state = _LOCAL
            self._ensure_local()
            return
        os.close(reply_w)
        assert proc.stdin is not None
        self._proc, self._fd, self._reply_fd = proc, proc.stdin.fileno(), reply_r
        try:
            import fcntl  # POSIX only, as process delivery is

            fcntl.fcntl(self._fd, _F_SETPIPE_SZ, _PIPE_BYTES)
        except (ImportError, OSError):
            pass  # the default pipe (64 KiB) works, with more writes
        # Records stay here until the sender says it is ready: one that fails to
        # start then takes none of them with it (they go to the local sink).
        self._ready = False
        self._state = _LIVE
        try:
            write_all(self._fd, control_frame({"op": "start", "spec": self._spec}))
        except OSError:
            os.close(reply_r)
            self._lost_sender("the sender process did not start")
            return
        os.set_blocking(self._fd, False)
        self._gone = False
        threading.Thread(
            target=self._read_replies,
            args=(reply_r, proc),
            name=f"aind-log-{self.name}-reply",
            daemon=True,
        ).start()
        threading.Thread(
            target=self._write_loop, name=f"aind-log-{self.name}-link", daemon=True
        ).start()

    def _read_replies(self, reply_fd: int, proc: subprocess.Popen[bytes]) -> None:
        with os.fdopen(reply_fd, "rb", closefd=False) as stream:
            for line in stream:
                try:
                    message = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if message.get("ready"):
                    with self._lock:
                        self._ready = True
                        if self._state is _LIVE and self._buf:
                            self._write_some()
                    continue
                with self._replied:
                    self._last = message.get("counters") or self._last
                    self._replies[message.get("id", -1)] = message
                    self._replied.notify_all()
        try:
            proc.wait(5.0)  # reap it: a zombie would look alive to the spool's claims
        except subprocess.TimeoutExpired:
            pass
        with self._replied:
            self._gone = True
            self._replied.notify_all()
        try:
            os.close(reply_fd)
        except OSError:
            pass
        with self._lock:
            if self._state is _LIVE and not self._closed:
                self._lost_sender("the sender process ended")

    def _write_loop(self) -> None:
        """Write what the caller left in the buffer.

        At once when the pipe has room for a backlog, else every
        :data:`WRITE_EVERY_S` (so a quiet program's last records do not wait for
        the next 64 KiB).
        """
        tick = self._tick
        while True:
            with self._lock:
                if self._state is not _LIVE:
                    return
                if self._buf:
                    self._write_some()
                backlog, fd = bool(self._buf), self._fd
            if backlog:  # the pipe was full: wake when the sender has read some
                try:
                    select.select([], [fd], [], WRITE_EVERY_S)
                except (OSError, ValueError):
                    tick.wait(WRITE_EVERY_S)
            elif tick.wait(WRITE_EVERY_S):
                return

    def _write_some(self) -> None:
        """Write what the pipe takes now (under the lock; never blocks)."""
        if not self._ready:
            self._write_at = len(self._buf) + WRITE_AT_BYTES
            return
        try:
            written = os.write(self._fd, self._buf)
        except BlockingIOError:
            written = 0
        except OSError:
            self._lost_sender("the pipe to the sender broke")
            return
        del self._buf[:written]
        # With the pipe full, the caller tries again only 64 KiB later: the link's
        # thread writes as soon as the sender has read.
        self._write_at = len(self._buf) + WRITE_AT_BYTES

    def _lost_sender(self, why: str) -> None:
        """The sender is gone (under the lock): what is buffered goes to a local sink."""
        diagnose(f"{self.name}:sender", f"{self.name}: {why}; sending from this process")
        self.generation += 1
        self._state = _LOCAL
        self._tick.set()
        self._buffer_to_local()

    def _buffer_to_local(self) -> int:
        """Hand the buffered records to the local sink (under the lock); how many."""
        pending, self._buf = self._buf, bytearray()
        records = [payload for control, payload in split_frames(pending)[0] if not control]
        if records:
            self._ensure_local().host_records(records)
        return len(records)

    def _ensure_local(self) -> Any:
        if self._local_sink is None:
            from ._host import build_sink

            self._local_sink = build_sink(self._spec)
            if self._state is _CLOSED:
                self._local_sink.close(0)  # after close: straight to the spool
        return self._local_sink

    # ---- the caller's side ---------------------------------------------------
    def submit(self, payload: bytes, prefix: bytes = b"") -> None:
        """Hand one packed record (``prefix + payload``) to the sender; never blocks, never raises."""
        try:
            with self._lock:
                if self._state is _UNSPAWNED:
                    self._spawn()  # the first record of a forked child
                if self._state is _LIVE:
                    buf = self._buf
                    if len(buf) < self._max_buffer:
                        buf += _pack_header(len(prefix) + len(payload))
                        buf += prefix
                        buf += payload
                        if len(buf) >= self._write_at:
                            # A full pipe is left to the link's thread, which waits
                            # for room: the caller retries only every 64 KiB more.
                            self._write_some()
                        return
                    self._dropped["buffer_full_sent_locally"] = (
                        self._dropped.get("buffer_full_sent_locally", 0) + 1
                    )
                local = self._ensure_local()
            local.host_records([prefix + payload])
        except Exception as exc:
            self._count_error("submit", exc)

    def submit_frame(self, head: bytes, payload: bytes) -> bool:
        """Hand one record whose frame header the caller packed; never blocks, never raises.

        ``head`` is the frame's :data:`~._wire.HEADER` (the length of everything
        after it) and the sink's prefix, packed in one go: the usual record of a
        busy sink costs the caller one ``struct`` call and two appends.

        Returns:
            False, taking nothing, when the link is not sending (not spawned yet
            in a forked child, sending locally, closed) or its buffer is full: the
            caller then hands the record to :meth:`submit`, which handles those.
        """
        try:
            with self._lock:
                if self._state is not _LIVE or len(self._buf) >= self._max_buffer:
                    return False
                buf = self._buf
                buf += head
                buf += payload
                if len(buf) >= self._write_at:
                    self._write_some()  # as in submit: a full pipe is the link thread's
        except Exception as exc:
            self._count_error("submit", exc)
        return True

    def _count_error(self, where: str, exc: BaseException) -> None:
        self._errors += 1
        diagnose(f"{self.name}:{where}", f"{self.name}: {where} failed: {type(exc).__name__}")

    def _request(self, op: str, wait_s: float, **fields: Any) -> dict[str, Any] | None:
        """Send a control message behind every buffered record; wait for the answer."""
        deadline = time.monotonic() + wait_s
        with self._request_lock:
            with self._lock:
                if self._state is not _LIVE:
                    return None
                self._next_id += 1
                rid = self._next_id
                self._buf += control_frame({"op": op, "id": rid, **fields})
            if not self._drain(deadline):
                return None
            with self._replied:
                self._replied.wait_for(
                    lambda: rid in self._replies or self._gone,
                    max(0.0, deadline - time.monotonic()),
                )
                return self._replies.pop(rid, None)

    def _drain(self, deadline: float) -> bool:
        """Write the whole buffer, waiting for the pipe up to ``deadline``."""
        while True:
            with self._lock:
                if self._state is not _LIVE:
                    return False
                if self._buf:
                    self._write_some()
                if not self._buf:
                    return True
                fd = self._fd
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                select.select([], [fd], [], min(remaining, 0.05))
            except (OSError, ValueError):
                return False

    def flush(self, timeout_s: float | None = None) -> bool:
        """Have the sender send everything it was given, within ``timeout_s``."""
        timeout = self._flush_timeout_s if timeout_s is None else max(0.0, float(timeout_s))
        local = self._local_sink
        if self._state is _LIVE:
            reply = self._request("flush", timeout + _GRACE_S, timeout=timeout)
            ok = bool(reply and reply.get("ok"))
            return ok and (local is None or bool(local.flush(timeout)))
        return local is None or bool(local.flush(timeout))

    def counters(self) -> dict[str, Any]:
        """The sender's counters (asked for now), with this side's added."""
        if self._state is _LIVE:
            reply = self._request("stats", _STATS_WAIT_S)
            child = reply["counters"] if reply else dict(self._last)
        else:
            child = self._final or dict(self._last)
        out = merge_counters(child, {"errors": self._errors, "dropped": dict(self._dropped)})
        out.setdefault("sent", 0)
        if self._local_sink is not None:
            out = merge_counters(out, self._local_sink.counters())
        return out

    def close(self, timeout_s: float | None = None) -> None:
        """Flush within ``timeout_s``, let the sender spool the rest and exit; idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        timeout = self._flush_timeout_s if timeout_s is None else max(0.0, float(timeout_s))
        release(self._atexit_hook)
        if self._state is _LIVE:
            deadline = time.monotonic() + timeout + _GRACE_S
            reply = self._request("close", timeout + _GRACE_S, timeout=timeout)
            if reply is not None:
                self._final = reply.get("counters") or {}
            with self._lock:
                self._state = _CLOSED
                self._tick.set()
                self._close_pipe()
                # What the sender never took is spooled here, by a local sink
                # built closed.
                unsent = self._buffer_to_local()
                if unsent:
                    diagnose(
                        f"{self.name}:close",
                        f"{self.name}: the sender did not take {unsent} record(s) in "
                        "time; they are spooled for the next start",
                    )
            proc = self._proc
            if proc is not None:
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass  # it spools what it holds at its own deadline, then exits
        with self._lock:
            self._state = _CLOSED
        if self._local_sink is not None:
            self._local_sink.close(timeout)

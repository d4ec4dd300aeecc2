"""Reading a SIPE frame's pickle with an unpickler that loads no class at all.

The logging cookbook's receiver unpickles whatever comes; the SIPE receiver's
:class:`FrameReader` refuses any class lookup (:class:`RefusedClass`), so only dicts,
lists, tuples, strings, numbers, booleans and None can arrive.
"""

from __future__ import annotations

import pickle
from typing import Any

__all__ = ["FrameReader", "RefusedClass"]


class RefusedClass(pickle.UnpicklingError):
    """The frame tried to load a class."""


class _PlainUnpickler(pickle.Unpickler):
    """Loads plain data only: every class lookup is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise RefusedClass(f"refused to load {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedClass("refused a persistent id")


class _Body:
    """One frame's pickle as a file the C unpickler can peek into.

    With ``peek`` the unpickler takes the whole body in one call and reads
    opcodes from memory, as :func:`pickle.loads` does; without it, it would call
    ``read`` for every opcode.
    """

    __slots__ = ("data", "taken")

    def __init__(self) -> None:
        self.data: bytes | bytearray = b""
        self.taken = 0

    def peek(self, size: int = 0) -> bytes | bytearray:
        return self.data[self.taken :] if self.taken else self.data

    def read(self, size: int = -1) -> bytes | bytearray:
        start = self.taken
        end = len(self.data) if size < 0 else min(len(self.data), start + size)
        self.taken = end
        return self.data[start:end]

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        chunk = self.read(len(view))
        view[: len(chunk)] = chunk
        return len(chunk)

    def readline(self, size: int = -1) -> bytes | bytearray:
        end = self.data.find(b"\n", self.taken)
        return self.read(-1 if end < 0 else end + 1 - self.taken)


class FrameReader:
    """Unpickles a connection's frames with one unpickler, as long as they are sound.

    Building an unpickler and a file for every frame cost the receiver twice
    what the unpickling did. One unpickler serves frame after frame while each
    pickle ends exactly at its frame's end (its memo emptied in between, so no
    frame can refer to another's objects); after any other outcome the next
    frame gets a new one, since this one may still hold the frame's rest.
    """

    def __init__(self) -> None:
        self._body = _Body()
        self._unpickler: _PlainUnpickler | None = None

    def load(self, data: bytes | bytearray) -> Any:
        """The object ``data`` (one frame's pickle) holds.

        Raises:
            RefusedClass: the pickle tried to load a class.
            Exception: any error of a broken pickle.
        """
        body = self._body
        unpickler = self._unpickler
        if unpickler is None:
            unpickler = _PlainUnpickler(body)  # type: ignore[arg-type]  # a file enough for it
        else:
            unpickler.memo.clear()
        body.data, body.taken = data, 0
        self._unpickler = None
        obj = unpickler.load()
        if body.taken == len(data):
            self._unpickler = unpickler
        return obj

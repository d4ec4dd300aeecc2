"""notata's save methods (0.3 names and the 0.1 ``save_*`` names), made safe.

Same files as notata 0.3.0 (``data/<name>.npy``, ``data/<name>.npz``,
``plots/<name>.<ext>``, ``artifacts/<name>.{txt,json,pkl}``, ``artifacts/<name>``),
but every name is checked before anything is written and every file is
written atomically (unique temp file, fsync, rename): a failed ``json()``
leaves no truncated file.
"""

from __future__ import annotations

import builtins
import pickle as _pickle
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from ._atomic import atomic_write, atomic_write_bytes, dump_json
from ._paths import check_name, resolve_inside

__all__ = ["SaveMixin", "require_matplotlib", "require_numpy"]

_EXTRA_HINT = "install the extra: pip install 'aind-log-utils[numpy]'"


def require_numpy() -> Any:
    """Import numpy, or explain which extra provides it.

    Returns:
        The numpy module.

    Raises:
        ImportError: numpy is not installed (the message names the extra).
    """
    try:
        import numpy
    except ImportError as exc:
        raise ImportError(f"saving arrays needs numpy: {_EXTRA_HINT}") from exc
    return numpy


def require_matplotlib() -> Any:
    """Import matplotlib, or explain which extra provides it.

    Returns:
        The matplotlib module.

    Raises:
        ImportError: matplotlib is not installed (the message names the extra).
    """
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(f"saving plots needs matplotlib: {_EXTRA_HINT}") from exc
    return matplotlib


def _stem(name: str, suffix: str) -> str:
    # notata's advice: no redundant extensions (config.json.json).
    if not isinstance(name, str):
        raise TypeError(f"name: expected a string, got {type(name).__name__}")
    return name[: -len(suffix)] if suffix and name.endswith(suffix) and name != suffix else name


def _savefig(fig: Any, ext: str, dpi: int) -> Callable[[IO[builtins.bytes]], object]:
    def write(handle: IO[builtins.bytes]) -> object:
        return fig.savefig(handle, format=ext, dpi=dpi, bbox_inches="tight")

    return write


class SaveMixin:
    """notata's save methods; mixed into :class:`RunDirectory`."""

    path: Path

    def _ensure_open(self) -> None:
        raise NotImplementedError

    def _note(self, message: str) -> None:
        raise NotImplementedError

    def _target(self, folder: str, name: str, suffix: str, category: str | None = None) -> Path:
        self._ensure_open()
        base = folder if category is None else check_name(category, "category")
        relative = f"{base}/{check_name(_stem(name, suffix))}{suffix}"
        return resolve_inside(self.path, relative, what="category" if category else "name")

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.path).as_posix()

    # -- notata 0.3 names ---------------------------------------------------------
    def array(self, name: str, array: Any, *, category: str | None = None) -> Path:
        """Save one array as ``data/<name>.npy`` (needs numpy).

        Args:
            name: the file's name without extension (may contain ``/``).
            array: anything ``numpy.asarray`` accepts.
            category: a folder relative to the run instead of ``data``.

        Returns:
            The file written.

        Raises:
            ValueError: the name leads outside the run directory.
            ImportError: numpy is not installed.
        """
        numpy = require_numpy()
        path = self._target("data", name, ".npy", category)
        atomic_write(path, lambda handle: numpy.save(handle, numpy.asarray(array)))
        self._note(f"Saved array {name} in {self._relative(path)}")
        return path

    def arrays(self, name: str, compressed: bool = True, **arrays: Any) -> Path:
        """Save named arrays into one ``data/<name>.npz`` archive (needs numpy).

        Args:
            name: the file's name without extension.
            compressed: use ``savez_compressed``.
            **arrays: the arrays; their keywords become the archive's keys.

        Returns:
            The file written.

        Raises:
            ValueError: the name leads outside the run directory, or no array given.
            ImportError: numpy is not installed.
        """
        numpy = require_numpy()
        if not arrays:
            raise ValueError("arrays: at least one array is needed")
        path = self._target("data", name, ".npz")
        saver = numpy.savez_compressed if compressed else numpy.savez
        atomic_write(path, lambda handle: saver(handle, **arrays))
        self._note(f"Saved arrays {name} in {self._relative(path)}")
        return path

    def plot(
        self, name: str, fig: Any = None, dpi: int = 200, formats: Iterable[str] = ("png",)
    ) -> list[Path]:
        """Save a matplotlib figure as ``plots/<name>.<ext>`` for each format.

        Args:
            name: the file's name without extension.
            fig: the figure; default the current one (``plt.gcf()``).
            dpi: the resolution of raster formats.
            formats: file extensions, e.g. ``("png", "pdf")``.

        Returns:
            The files written.

        Raises:
            ImportError: matplotlib is not installed (names the extra).
            ValueError: the name or a format leads outside the run directory.
        """
        require_matplotlib()
        if fig is None:
            import matplotlib.pyplot as plt

            fig = plt.gcf()
        exts = [formats] if isinstance(formats, str) else list(formats)
        paths = [self._target("plots", name, f".{ext}") for ext in exts]
        for ext, path in zip(exts, paths, strict=True):
            atomic_write(path, _savefig(fig, ext, dpi))
        self._note(f"Saved plot {name} ({'/'.join(exts)}) in plots")
        return paths

    def text(self, name: str, content: str) -> Path:
        """Save text as ``artifacts/<name>.txt`` (UTF-8).

        Args:
            name: the file's name without extension.
            content: the text.

        Returns:
            The file written.

        Raises:
            ValueError: the name leads outside the run directory.
        """
        path = self._target("artifacts", name, ".txt")
        atomic_write_bytes(path, str(content).encode("utf-8"))
        self._note(f"Saved text {name} in {self._relative(path)}")
        return path

    def json(self, name: str, data: Any) -> Path:
        """Save data as ``artifacts/<name>.json`` (indent 2, sorted keys, as notata).

        numpy values, paths and dates are converted to plain JSON. The data is
        serialised before the file is touched, so a failure leaves no file.

        Args:
            name: the file's name without extension.
            data: a JSON-serialisable value.

        Returns:
            The file written.

        Raises:
            ValueError: the name leads outside the run directory.
            TypeError: the data cannot be serialised.
        """
        path = self._target("artifacts", name, ".json")
        atomic_write_bytes(path, dump_json(data))
        self._note(f"Saved JSON {name} in {self._relative(path)}")
        return path

    def pickle(self, name: str, obj: Any, protocol: int = _pickle.HIGHEST_PROTOCOL) -> Path:
        """Pickle ``obj`` to ``artifacts/<name>.pkl``.

        Args:
            name: the file's name without extension.
            obj: the object.
            protocol: the pickle protocol.

        Returns:
            The file written.

        Raises:
            ValueError: the name leads outside the run directory.
        """
        path = self._target("artifacts", name, ".pkl")
        atomic_write(path, lambda handle: _pickle.dump(obj, handle, protocol=protocol))
        self._note(f"Saved pickle {name} in {self._relative(path)}")
        return path

    def bytes(self, name: str, data: builtins.bytes) -> Path:
        """Save raw bytes to ``artifacts/<name>`` (the name keeps its extension).

        Args:
            name: the file's name, with extension.
            data: the content.

        Returns:
            The file written.

        Raises:
            ValueError: the name leads outside the run directory.
            TypeError: ``data`` is not bytes-like.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data: expected bytes, got {type(data).__name__}")
        path = self._target("artifacts", name, "")
        atomic_write_bytes(path, builtins.bytes(data))
        self._note(f"Saved bytes {name} in {self._relative(path)}")
        return path

    def __getitem__(self, relative: str) -> Path:
        """A path inside the run directory, parents made (``run["artifacts/x/y.json"]``).

        Args:
            relative: a path relative to the run directory.

        Returns:
            The path (the file itself is not created).

        Raises:
            ValueError: the path leads outside the run directory.
        """
        self._ensure_open()
        path = resolve_inside(self.path, relative, what="path")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    # -- notata 0.1 names (the seed text) --------------------------------------------
    def save_numpy(self, name: str, array: Any, category: str | None = None) -> Path:
        """The notata 0.1 name for :meth:`array` (written as 0.3 does, ``.npy``).

        Args:
            name: the file's name without extension.
            array: the array.
            category: a folder relative to the run, e.g. ``"data/intermediate"``.

        Returns:
            The file written.
        """
        return self.array(name, array, category=category)

    def save_arrays(self, name: str, compressed: bool = True, **arrays: Any) -> Path:
        """The notata 0.1 name for :meth:`arrays`.

        Args:
            name: the file's name without extension.
            compressed: use ``savez_compressed``.
            **arrays: the arrays.

        Returns:
            The file written.
        """
        return self.arrays(name, compressed, **arrays)

    def save_plot(
        self, name: str, fig: Any = None, dpi: int = 200, formats: Iterable[str] = ("png",)
    ) -> list[Path]:
        """The notata 0.1 name for :meth:`plot`.

        Args:
            name: the file's name without extension.
            fig: the figure (default: the current one).
            dpi: the resolution.
            formats: file extensions.

        Returns:
            The files written.
        """
        return self.plot(name, fig, dpi, formats)

    def save_text(self, name: str, content: str) -> Path:
        """The notata 0.1 name for :meth:`text`.

        Args:
            name: the file's name without extension.
            content: the text.

        Returns:
            The file written.
        """
        return self.text(name, content)

    def save_json(self, name: str, data: Any) -> Path:
        """The notata 0.1 name for :meth:`json`.

        Args:
            name: the file's name without extension.
            data: the data.

        Returns:
            The file written.
        """
        return self.json(name, data)

    def save_pickle(self, name: str, obj: Any, protocol: int = _pickle.HIGHEST_PROTOCOL) -> Path:
        """The notata 0.1 name for :meth:`pickle`.

        Args:
            name: the file's name without extension.
            obj: the object.
            protocol: the pickle protocol.

        Returns:
            The file written.
        """
        return self.pickle(name, obj, protocol)

    def save_bytes(self, name: str, data: builtins.bytes) -> Path:
        """The notata 0.1 name for :meth:`bytes`.

        Args:
            name: the file's name with extension.
            data: the content.

        Returns:
            The file written.
        """
        return self.bytes(name, data)

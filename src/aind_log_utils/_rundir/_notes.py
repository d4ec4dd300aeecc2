"""notata's logging methods of a run (``note``, ``info``, ``debug``, ...)."""

from __future__ import annotations

import logging

__all__ = ["NoteMixin"]


class NoteMixin:
    """notata's logging methods; mixed into :class:`~._directory.RunDirectory`.

    Each logs on the run's logger, so the line lands in the run's ``log.txt`` and
    ``log.jsonl`` (and wherever the session sends records).
    """

    logger: logging.Logger

    def note(self, message: str, level: int = logging.INFO) -> None:
        """Log a message at ``level`` (notata's ``note``).

        Args:
            message: the message.
            level: the level number.
        """
        self.logger.log(level, message)

    def info(self, msg: str) -> None:
        """Log at INFO (notata's ``info``)."""
        self.logger.info(msg)

    def debug(self, msg: str) -> None:
        """Log at DEBUG (notata's ``debug``)."""
        self.logger.debug(msg)

    def warning(self, msg: str) -> None:
        """Log at WARNING (notata's ``warning``)."""
        self.logger.warning(msg)

    def error(self, msg: str) -> None:
        """Log at ERROR (notata's ``error``)."""
        self.logger.error(msg)

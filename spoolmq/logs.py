"""Logging set-up: `logs/spoolmq.log` with size-based rotation, plus stderr."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

LOG_FILE_BYTES = 10 * 1024 * 1024  # one rotated file; small enough to open in an editor
LOG_FILE_COUNT = 5  # keeps ~50 MiB of history
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(log_dir: Path, level: str = "INFO", stderr: bool = True) -> Path:
    """Route the root logger to `<log_dir>/spoolmq.log` (rotating) and stderr; return its path."""
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / "spoolmq.log"
    root = logging.getLogger()
    root.setLevel(level.upper())
    for handler in list(root.handlers):
        if getattr(handler, "_spoolmq", False):
            root.removeHandler(handler)
            handler.close()
    file_handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=LOG_FILE_BYTES, backupCount=LOG_FILE_COUNT, encoding="utf-8"
    )
    handlers: list[logging.Handler] = [file_handler]
    if stderr:
        handlers.append(logging.StreamHandler())
    for handler in handlers:
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._spoolmq = True  # type: ignore[attr-defined]  # marks our handlers for re-setup
        root.addHandler(handler)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return path

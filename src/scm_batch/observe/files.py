"""Files the commands leave for other programs to read (the metrics file, the HTML report)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

SHARED_MODE = 0o644  # read by others: a node exporter running as its own user, a web server


def replace_file(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it over ``path``, so that a
    reader sees the old file or the new one, never half of one. The temporary name is hidden and
    ends in ``.tmp`` (the node exporter's textfile collector reads only ``*.prom`` files); the
    file is readable by everyone (``mkstemp`` makes it its owner's only)."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            os.fchmod(stream.fileno(), SHARED_MODE)
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise

"""Zip a directory into a Lambda deployment package, reproducibly.

    python deploy/lambda_zip.py build/lambda dist/scm-batch-lambda.zip

The same tree gives the same bytes: entries sorted, every timestamp 1980-01-01, permissions
normalised (0644, or 0755 for executables). Left out is what depends on the build machine or
time and has no use on Lambda: ``__pycache__``/``*.pyc``, the console scripts in ``bin/`` (their
``#!`` line names the build's interpreter), and the ``RECORD`` and ``direct_url.json`` files of
``*.dist-info`` (hashes of those scripts; the build's path). Terraform's ``source_code_hash`` then
changes only when the code or a dependency does.
"""

from __future__ import annotations

import os
import stat
import sys
import zipfile
from pathlib import Path

FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def _skipped(relative: Path) -> bool:
    return (
        "__pycache__" in relative.parts
        or relative.suffix == ".pyc"
        or relative.parts[0] == "bin"
        or (
            relative.name in {"RECORD", "direct_url.json"}
            and relative.parent.name.endswith(".dist-info")
        )
    )


def build(source: Path, target: Path) -> int:
    files = sorted(
        (
            path.relative_to(source)
            for path in source.rglob("*")
            if path.is_file() and not _skipped(path.relative_to(source))
        ),
        key=Path.as_posix,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for relative in files:
            path = source / relative
            info = zipfile.ZipInfo(relative.as_posix(), date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            executable = path.stat().st_mode & stat.S_IXUSR
            info.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
            info.create_system = 3  # Unix, so that the permissions above are read as such
            archive.writestr(info, path.read_bytes())
    os.replace(partial, target)
    return len(files)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: lambda_zip.py SOURCE_DIR TARGET_ZIP", file=sys.stderr)
        return 2
    source, target = Path(argv[0]), Path(argv[1])
    if not source.is_dir():
        print(f"lambda_zip.py: {source} is not a directory", file=sys.stderr)
        return 2
    count = build(source, target)
    print(f"{target}: {count} files, {target.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

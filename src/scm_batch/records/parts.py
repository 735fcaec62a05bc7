"""Result parts: how a chunk's valid records are written, as JSON Lines or as Parquet.

``process_chunk`` hands every block of transformed records to a :class:`ResultPart`, together with
the same records encoded as JSON Lines (which it needs anyway for delivery):

* ``jsonl`` writes the encoded lines as they are: the part is byte for byte what it always was;
* ``parquet`` (:mod:`scm_batch.records.parquet`, which needs pyarrow: ``pip install
  'scm-batch[parquet]'``) converts the block to Arrow and writes zstd-compressed row groups.

pyarrow is imported only when Parquet is asked for, so the default install does not need it.
:func:`require_output_format` checks that it can be, before a batch does any work.

A part is finished (:meth:`ResultPart.finish`) before the chunk's delivery is confirmed, so that a
failure to complete it fails the chunk while its messages can still be withdrawn; the storage
object is committed after both.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from scm_batch.errors import ConfigError
from scm_batch.model import OutputFormat, PartCheck
from scm_batch.records.native import crc32_function
from scm_batch.storage import ObjectWriter, Storage

PARQUET_INSTALL_HINT = "pip install 'scm-batch[parquet]'"
# Only pyarrow 26.0.1 is tested, and the Parquet part's fast path relies on how its strict JSON
# reader behaves (an error for a value of another type, never a conversion): see pyproject.toml.
MIN_PYARROW_MAJOR = 26


class ResultPart(Protocol):
    """The result part of one chunk, being written block by block."""

    def write(self, encoded: bytes, /) -> None:
        """Add one block's records, as JSON Lines."""
        ...

    def finish(self) -> None:
        """Write whatever completes the part (for Parquet: the last row group and the footer),
        so that nothing is left to fail when the storage object is committed."""
        ...


class JsonLinesPart:
    """One JSON document per line: the encoded lines, written as they are."""

    __slots__ = ("_out",)

    def __init__(self, out: ObjectWriter) -> None:
        self._out = out

    def write(self, encoded: bytes, /) -> None:
        self._out.write(encoded)

    def finish(self) -> None:
        """Nothing to add: every line is written as it comes."""


def require_output_format(output_format: OutputFormat, field: str = "--output-format") -> None:
    """Raise a ``ConfigError`` naming ``field`` when ``output_format`` cannot be written here
    (Parquet without pyarrow, or with one older than the extra asks for)."""
    if output_format != "parquet":
        return
    problem = f"parquet needs pyarrow>={MIN_PYARROW_MAJOR}, which is not installed"
    try:
        import pyarrow  # noqa: PLC0415 - optional, imported only when Parquet is asked for
    except ImportError:
        raise ConfigError(field, f"{problem}: {PARQUET_INSTALL_HINT}") from None
    version = str(getattr(pyarrow, "__version__", "0"))
    major = version.split(".", 1)[0]
    if not major.isdigit() or int(major) < MIN_PYARROW_MAJOR:
        raise ConfigError(
            field, f"{problem} (pyarrow {version} is too old): {PARQUET_INSTALL_HINT}"
        )


@contextmanager
def open_result_part(output_format: OutputFormat, out: ObjectWriter) -> Iterator[ResultPart]:
    """A result part writing into ``out`` (a storage writer). The part is finished (for Parquet:
    its last row group and footer written) when the block ends normally, unless
    :meth:`ResultPart.finish` did it already; after an error, there or in the block, nothing more
    is written, and the storage writer discards the object."""
    if output_format == "jsonl":
        yield JsonLinesPart(out)
        return
    require_output_format(output_format, field="outputFormat")
    from scm_batch.records.parquet import ParquetPart  # noqa: PLC0415 - needs pyarrow

    part = ParquetPart(out)
    try:
        yield part
        part.close()  # nothing to do if the part was finished inside the block
    except BaseException:
        part.abandon()
        raise


class CheckedWriter:
    """An object writer that counts and checksums what goes through it, for the receipt."""

    def __init__(self, out: ObjectWriter, key: str) -> None:
        self._out = out
        self._key = key
        self._size = 0
        self._crc32 = 0
        self._checksum = crc32_function()

    def write(self, data: bytes, /) -> int:
        self._size += len(data)
        self._crc32 = self._checksum(data, self._crc32)
        return self._out.write(data)

    def check(self) -> PartCheck:
        return PartCheck(key=self._key, size=self._size, crc32=self._crc32)


@contextmanager
def checked_writer(store: Storage, key: str) -> Iterator[CheckedWriter]:
    with store.open_writer(key) as out:
        yield CheckedWriter(out, key)

"""Which record engine a worker runs: the native one (Rust, the optional package
``scm-batch-native``, built from ``native/``) when it is installed, else the Python one.

``SCM_BATCH_ENGINE`` chooses, in each worker's environment: ``auto`` (the default: native when
installed), ``native`` (refuse to run without it) or ``python``. The two engines write the same
bytes (a differential test keeps them so), so the choice changes speed only, and a batch may be
resumed under the other engine. The choice is the environment's, not the batch's: it is read
where the chunk runs, and each chunk's receipt names the engine that ran it.
"""

from __future__ import annotations

import importlib
import os
import zlib
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol, cast

from scm_batch.errors import ConfigError

ENGINE_ENV = "SCM_BATCH_ENGINE"
EngineName = Literal["native", "python"]
_CHOICES = ("auto", "native", "python")

Answer = tuple[bytes, int, int, int, list[tuple[int, int, int, int, bool]], Any]
"""``(encoded, lines, blanks, valid, deferred, marks)``: see ``native/src/python.rs``."""


class NativeEngine(Protocol):
    """The module ``scm_batch_native`` (``native/src/python.rs``)."""

    def Stamps(
        self,
        processed_at: bytes,
        customer_id: bytes,
        tenant_id: bytes,
        gss_prefix: bytes,
        id_prefix: bytes,
    ) -> object: ...

    def sort_lines(
        self, buf: bytes, base: int, max_line: int, stamps: object, marks: bool
    ) -> Answer: ...

    def sort_elements(
        self, elements: list[bytes], starts: list[int], stamps: object, marks: bool
    ) -> Answer: ...

    def count_newlines(self, buf: bytes, start: int, end: int) -> int: ...

    def crc32(self, buf: bytes, value: int) -> int: ...

    def scan_structure(
        self, block: bytes, position: int, depth: int, in_string: bool, backslashes: int
    ) -> tuple[bytes, int | None, int, tuple[int, int, bool, int]]: ...


def native_engine(env: Mapping[str, str] | None = None) -> NativeEngine | None:
    """The native engine when ``SCM_BATCH_ENGINE`` allows it and it is installed, else ``None``
    (the Python engine). ``native`` without the package is a :class:`ConfigError`."""
    choice = (env if env is not None else os.environ).get(ENGINE_ENV) or "auto"
    if choice not in _CHOICES:
        raise ConfigError(ENGINE_ENV, f"{choice!r} is not one of {', '.join(_CHOICES)}")
    if choice == "python":
        return None
    try:
        module = importlib.import_module("scm_batch_native")
    except ImportError:
        if choice == "native":
            raise ConfigError(
                ENGINE_ENV,
                "native, but the native engine (scm-batch-native) is not installed: `make "
                "native` builds it; unset the variable to run the Python engine",
            ) from None
        return None
    return cast("NativeEngine", module)


def crc32_function() -> Callable[[bytes, int], int]:
    """zlib's CRC-32 (``crc32(data, value)``), by the native engine where it runs (9 times as fast
    here: the parts' checksums are taken over every byte written)."""
    engine = native_engine()
    return engine.crc32 if engine is not None else zlib.crc32


def engine_name(engine: NativeEngine | None) -> EngineName:
    return "python" if engine is None else "native"

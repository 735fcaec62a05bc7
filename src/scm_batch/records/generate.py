"""Deterministic synthetic supply-chain records, for demos, tests and benchmarks.

Records are written as JSON Lines of about 370 bytes (the contract's field names and values take
~240 of them; the supply-chain payload the rest) that pass the default validation rules and
carry the fields the transform touches. ``invalid_rate`` turns that share of records into ones that
break exactly one rule; ``malformed_rate`` replaces that share of lines with text that is not JSON.

The output depends only on (records, seed, rates): the records are made in blocks, each with its
own generator seeded from (seed, block number), and streamed to the file block by block, so any
number of records can be written in constant memory.
"""

from __future__ import annotations

import bz2
import gzip
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

import zstandard

BLOCK_RECORDS = 10_000

_FIRST = [
    "Maria",
    "James",
    "Aiko",
    "Olu",
    "Chen",
    "Priya",
    "Lars",
    "Sofia",
    "Mateo",
    "Amara",
    "Noah",
    "Ines",
    "Ravi",
    "Elena",
    "Tomas",
    "Hana",
    "Kofi",
    "Lena",
    "Diego",
    "Yara",
    "Omar",
    "Freya",
    "Ivan",
    "Zara",
    "Luca",
    "Mina",
    "Arjun",
    "Nora",
    "Felix",
    "Leila",
    "Sven",
    "Ada",
]
_LAST = [
    "Garcia",
    "Smith",
    "Tanaka",
    "Adeyemi",
    "Wang",
    "Patel",
    "Nilsson",
    "Rossi",
    "Lopez",
    "Okafor",
    "Brown",
    "Silva",
    "Kumar",
    "Petrova",
    "Novak",
    "Sato",
    "Mensah",
    "Fischer",
    "Torres",
    "Haddad",
    "Khan",
    "Berg",
    "Ivanova",
    "Ali",
    "Bianchi",
    "Park",
    "Singh",
    "Costa",
    "Weber",
    "Nasser",
    "Holm",
    "Dubois",
]
_DOMAINS = [
    "acme.com",
    "northwind.io",
    "globex.io",
    "initech.net",
    "umbrella.co",
    "stark.dev",
    "wayne.co",
    "tyrell.io",
]
# 16 slots: the statuses in realistic proportions.
_STATUSES = ["active"] * 10 + ["inactive"] * 2 + ["pending"] * 2 + ["suspended", "deleted"]
_SITES = ["ATL", "DFW", "ORD", "LAX", "NYC", "SEA", "HAM", "RTM"]
_UOMS = ["EA", "CS", "PK", "PL"]
_TAGS = [
    "fragile",
    "priority",
    "hazmat",
    "cold-chain",
    "oversize",
    "returnable",
    "bulk",
    "fast-moving",
]
_FIRST_DAY = date(2022, 1, 1)
_DAYS = [(_FIRST_DAY + timedelta(days=n)).isoformat() for n in range(1024)]
_MAX_LAG_DAYS = 255


@dataclass(frozen=True, slots=True)
class GenerateStats:
    """What a generated file holds; ``lines == valid + invalid + malformed``."""

    lines: int
    valid: int
    invalid: int
    malformed: int
    bytes: int


def _timestamp(day: int, bits: int) -> str:
    seconds = bits % 86_400
    return f"{_DAYS[day]}T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}Z"


def _uuid4(bits: int) -> str:
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[bits & 3]}{h[17:20]}-{h[20:]}"


def _record(number: int, rng: random.Random, broken: int | None) -> str:
    """One record as a JSON line; ``broken`` selects the one rule it breaks (or ``None``)."""
    r = rng.getrandbits(64)
    first = _FIRST[r & 31]
    last = _LAST[(r >> 5) & 31]
    created_day = (r >> 10) & 767
    updated_day = created_day + ((r >> 20) & _MAX_LAG_DAYS)
    t = rng.getrandbits(64)
    fields = {
        "id": f'"R{number:09d}"',
        "name": f'"{first} {last}"',
        "email": f'"{first[0].lower()}.{last.lower()}{number % 100}@{_DOMAINS[(r >> 28) & 7]}"',
        "status": f'"{_STATUSES[(r >> 31) & 15]}"',
        "createdAt": f'"{_timestamp(created_day, t)}"',
        "updatedAt": f'"{_timestamp(updated_day, t >> 20)}"',
    }
    if broken is not None:
        field, value = _BREAKERS[broken % len(_BREAKERS)]
        if value is None:
            del fields[field]
        else:
            fields[field] = value
    head = ",".join(f'"{k}":{v}' for k, v in fields.items())
    quantity = 1 + ((r >> 35) & 511)
    price = ((r >> 44) & 0x3FFF) + 99
    tags = ",".join(f'"{_TAGS[(t >> (40 + 3 * i)) & 7]}"' for i in range(1 + ((t >> 38) & 1)))
    return (
        f'{{{head},"gssId":"{_uuid4(rng.getrandbits(128))}",'
        f'"customerId":"C{(t >> 50) & 1023:04d}","tenantId":"T{(t >> 60) & 15:02d}",'
        f'"sku":"SKU-{(r >> 8) & 0xFFFFF:06d}",'
        f'"locationId":"{_SITES[(t >> 34) & 7]}-{(t >> 44) & 31:02d}",'
        f'"quantity":{quantity},"unitPrice":{price // 100}.{price % 100:02d},'
        f'"pack":{{"uom":"{_UOMS[(t >> 36) & 3]}","kg":{((t >> 20) & 511) / 10}}},'
        f'"tags":[{tags}]}}'
    )


# Each entry breaks one rule: (field, replacement JSON value, or None to drop the field).
_BREAKERS: list[tuple[str, str | None]] = [
    ("email", None),
    ("email", '"not-an-email"'),
    ("status", '"archived"'),
    ("name", '""'),
    ("createdAt", '"2024-13-45 25:61"'),
    ("id", "null"),
    ("updatedAt", None),
    ("name", '"X"'),
]

_MALFORMED: list[Callable[[str], str]] = [
    lambda line: line[: len(line) // 2],  # a record cut short
    lambda line: line.replace('":', '"=', 1),  # broken syntax
    lambda _: "<record>not json</record>",
    lambda line: line[:-1] + ",}",  # trailing comma
]
# In a JSON array a record cut short would unbalance the whole array (a broken file, refused),
# so there the first kind is a key in single quotes: malformed, and the array stays whole.
_MALFORMED_IN_ARRAY: list[Callable[[str], str]] = [
    lambda line: line.replace('"', "'", 2),
    *_MALFORMED[1:],
]
FileFormat = Literal["jsonl", "json-array"]
Compress = Literal["none", "gzip", "zstd", "bz2"]


def generate_lines(
    start: int,
    count: int,
    seed: int,
    invalid_rate: float,
    malformed_rate: float,
    file_format: FileFormat = "jsonl",
) -> tuple[list[str], GenerateStats]:
    """Lines ``start .. start+count-1`` of the file for ``seed`` (``start`` a block multiple)."""
    rng = random.Random(seed * 1_000_003 + start // BLOCK_RECORDS)
    breakers = _MALFORMED_IN_ARRAY if file_format == "json-array" else _MALFORMED
    lines: list[str] = []
    invalid = malformed = 0
    for number in range(start + 1, start + count + 1):
        roll = rng.random()
        if roll < malformed_rate:
            malformed += 1
            line = breakers[rng.randrange(len(breakers))](_record(number, rng, None))
        elif roll < malformed_rate + invalid_rate:
            invalid += 1
            line = _record(number, rng, rng.randrange(len(_BREAKERS)))
        else:
            line = _record(number, rng, None)
        lines.append(line)
    size = sum(len(line) + 1 for line in lines)
    return lines, GenerateStats(count, count - invalid - malformed, invalid, malformed, size)


class _Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


@contextmanager
def _compressed(raw: BinaryIO, compress: Compress) -> Iterator[_Writable]:
    """``raw``, or a stream that compresses into it (closed, and so finished, on exit)."""
    if compress == "none":
        yield raw
        return
    out: gzip.GzipFile | bz2.BZ2File | zstandard.ZstdCompressionWriter
    if compress == "gzip":
        out = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0)
    elif compress == "bz2":
        out = bz2.BZ2File(raw, "wb")
    else:
        out = zstandard.ZstdCompressor(level=3, write_checksum=True).stream_writer(
            raw, closefd=False
        )
    with out:
        yield out


def generate_file(
    path: Path,
    records: int,
    *,
    seed: int = 1,
    invalid_rate: float = 0.0,
    malformed_rate: float = 0.0,
    on_progress: Callable[[int], None] | None = None,
    file_format: FileFormat = "jsonl",
    compress: Compress = "none",
) -> GenerateStats:
    """Write ``records`` lines to ``path`` (through a temporary file); return what it holds.

    ``json-array`` writes the same records as one JSON array, one element per line (``[``,
    the records separated by ``,`` and a newline, ``]``); ``compress`` compresses what is written
    (gzip, zstd or bzip2). The sizes returned are those of the uncompressed text."""
    if records < 0:
        raise ValueError("records must not be negative")
    if not (0.0 <= invalid_rate <= 1.0 and 0.0 <= malformed_rate <= 1.0):
        raise ValueError("rates must be between 0 and 1")
    if invalid_rate + malformed_rate > 1.0:
        raise ValueError("invalid and malformed rates must add up to at most 1")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    valid = invalid = malformed = size = 0
    array = file_format == "json-array"
    with tmp.open("wb") as raw, _compressed(raw, compress) as out:
        if array:
            out.write(b"[\n")
            size += 2
        for start in range(0, records, BLOCK_RECORDS):
            count = min(BLOCK_RECORDS, records - start)
            lines, stats = generate_lines(
                start, count, seed, invalid_rate, malformed_rate, file_format
            )
            if array:
                text = ("" if start == 0 else ",\n") + ",\n".join(lines)
                size += len(text.encode()) - stats.bytes
            else:
                text = "\n".join(lines) + "\n"
            out.write(text.encode())
            valid += stats.valid
            invalid += stats.invalid
            malformed += stats.malformed
            size += stats.bytes
            if on_progress is not None:
                on_progress(count)
        if array:
            out.write(b"\n]\n")
            size += 3
    tmp.replace(path)
    return GenerateStats(records, valid, invalid, malformed, size)

"""Where one worker's time goes, step by step, over the first lines of a JSON Lines file.

``python -m bench.steps FILE [LINES]`` times, per line and best of five passes: splitting blocks
into lines, decoding, validating, transforming and encoding, as ``process_chunk`` does them
(blocks of 1 MiB, the cyclic collector paused). Lines that are blank or not JSON are left out.
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from scm_batch.records.codecs import iter_line_blocks
from scm_batch.records.transform import TransformContext, transform_records
from scm_batch.records.validate import is_valid

BLOCK = 1 << 20
PASSES = 5


def sample(path: Path, lines: int) -> list[list[bytes]]:
    """The first ``lines`` decodable lines, in blocks as a chunk reads them."""
    with path.open("rb") as f:
        data = b"".join(f.readline() for _ in range(lines))
    decode = msgspec.json.Decoder().decode
    blocks: list[list[bytes]] = []
    for block in iter_line_blocks(data[i : i + BLOCK] for i in range(0, len(data), BLOCK)):
        kept = []
        for line in block:
            try:
                decode(line)
            except msgspec.DecodeError:
                continue
            kept.append(line)
        blocks.append(kept)
    return blocks


def one_pass(path: Path, lines: int, blocks: list[list[bytes]]) -> dict[str, float]:
    with path.open("rb") as handle:
        data = b"".join(handle.readline() for _ in range(lines))
    decode = msgspec.json.Decoder().decode
    encode = msgspec.json.Encoder().encode_lines
    ctx = TransformContext.create(
        batch_id="b", customer_id="c", tenant_id="t", processed_at="2026-01-01T00:00:00.000Z"
    )
    spent = dict.fromkeys(("split", "decode", "validate", "transform", "encode"), 0.0)
    start = time.perf_counter()
    for _ in iter_line_blocks(data[i : i + BLOCK] for i in range(0, len(data), BLOCK)):
        pass
    spent["split"] = time.perf_counter() - start
    for block in blocks:
        a = time.perf_counter()
        records: list[Any] = list(map(decode, block))
        b = time.perf_counter()
        verdicts = list(map(is_valid, records))
        c = time.perf_counter()
        good = [r for r, ok in zip(records, verdicts, strict=True) if ok]
        d = time.perf_counter()
        transform_records(good, list(range(len(good))), ctx)
        e = time.perf_counter()
        encode(good)
        g = time.perf_counter()
        spent["decode"] += b - a
        spent["validate"] += c - b
        spent["transform"] += e - d
        spent["encode"] += g - e
    return spent


def main() -> None:
    path = Path(sys.argv[1])
    lines = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
    blocks = sample(path, lines)
    count = sum(map(len, blocks))
    gc.disable()
    best: dict[str, float] = {}
    for _ in range(PASSES):
        for step, seconds in one_pass(path, lines, blocks).items():
            best[step] = min(best.get(step, float("inf")), seconds / count * 1e6)
    steps = ", ".join(f"{step} {us:.2f}" for step, us in best.items())
    print(f"{count:,} lines, µs per line: {steps}; sum {sum(best.values()):.2f}")


if __name__ == "__main__":
    main()

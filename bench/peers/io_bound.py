"""The I/O bound of this machine for scm-batch's job: read the input and write output of the
result's size, with scm-batch's own write policy, doing nothing else.

Two processes (scm-batch's two workers) take every other range of about 15 MB (a chunk of the
benchmark) and read it in 1 MiB blocks; for each block they write as many bytes as scm-batch's
parts hold per input byte (``--out-ratio``: the result and error parts of the same input over its
size, measured by the harness) through the project's local storage writer: a hidden temporary
file, each write handed to the kernel for write-back at once, ``fsync``, rename. What scm-batch
adds above this is its work on the records and its bookkeeping.
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from scm_batch.storage import LocalStorage

RANGE = 15 << 20
BLOCK = 1 << 20
WORKERS = 2


def _copy_range(source: str, target: str, index: int, start: int, end: int, ratio: float) -> int:
    storage = LocalStorage(Path(target))
    written = 0
    filler = b"x" * (int(BLOCK * ratio) + 1)
    with open(source, "rb", buffering=0) as reader, storage.open_writer(f"part-{index:05d}") as out:
        reader.seek(start)
        position = start
        while position < end:
            block = reader.read(min(BLOCK, end - position))
            if not block:
                break
            position += len(block)
            size = int(len(block) * ratio)
            out.write(filler if size == len(filler) else filler[:size])
            written += size
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("input", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--out-ratio", type=float, required=True)
    args, _ = parser.parse_known_args()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    size = os.path.getsize(args.input)
    ranges = [(i, start, min(start + RANGE, size)) for i, start in enumerate(range(0, size, RANGE))]
    source, target = str(args.input), str(args.output_dir)
    with ProcessPoolExecutor(WORKERS) as pool:
        futures = [
            pool.submit(_copy_range, source, target, i, start, end, args.out_ratio)
            for i, start, end in ranges
        ]
        written = sum(f.result() for f in futures)
    print(f'{{"read": {size}, "written": {written}}}')


if __name__ == "__main__":
    main()

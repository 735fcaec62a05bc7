"""Bad input gets one clear line on standard error, the documented exit code, and no traceback."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import zstandard

from tests.conftest import Cli

GOOD_RECORD = (
    '{"id":"R1","name":"Name","email":"a@example.com","status":"active",'
    '"createdAt":"2024-01-01T00:00:00Z","updatedAt":"2024-01-01T00:00:00Z"}\n'
)


def job_flags(bucket: Path, file: str = "in.jsonl", **overrides: str) -> list[str]:
    flags = {
        "--bucket": str(bucket),
        "--file": file,
        "--customer-id": "cust",
        "--tenant-id": "ten",
        "--batch-id": "b1",
    }
    flags.update({f"--{k.replace('_', '-')}": v for k, v in overrides.items()})
    return [part for pair in flags.items() for part in pair]


def assert_one_line_error(result: object, code: int, *words: str) -> None:
    stderr = result.stderr  # type: ignore[attr-defined]
    assert result.returncode == code, stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    # Progress lines may come first; the error is one line, and the last.
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == lines[-1:], stderr
    for word in words:
        assert word in errors[0]


@pytest.fixture
def good_input(bucket: Path) -> Path:
    (bucket / "in.jsonl").write_text(GOOD_RECORD * 10)
    return bucket


def test_missing_file(cli: Cli, bucket: Path) -> None:
    assert_one_line_error(
        cli("run", *job_flags(bucket, "absent.jsonl")), 2, "absent.jsonl", "no such file"
    )


def test_empty_file(cli: Cli, bucket: Path) -> None:
    (bucket / "empty.jsonl").write_bytes(b"")
    assert_one_line_error(cli("run", *job_flags(bucket, "empty.jsonl")), 2, "is empty")


def test_blank_lines_only(cli: Cli, bucket: Path) -> None:
    (bucket / "blank.jsonl").write_bytes(b"\n  \n\r\n")
    assert_one_line_error(cli("run", *job_flags(bucket, "blank.jsonl")), 2, "no records")


def test_a_directory(cli: Cli, bucket: Path) -> None:
    (bucket / "dir").mkdir()
    assert_one_line_error(cli("run", *job_flags(bucket, "dir")), 2, "not a regular file")


def _zstd_with_a_corrupt_frame() -> bytes:
    frame = bytearray(
        zstandard.ZstdCompressor(write_checksum=True).compress(GOOD_RECORD.encode() * 50)
    )
    frame[4] = 0xFF  # the frame header descriptor: reserved bit set
    return bytes(frame)


BROKEN_INPUTS = [
    # (file name, bytes, words the one line must hold, exit code)
    ("cut.gz", gzip.compress(GOOD_RECORD.encode() * 2000)[:-40], ["gzip", "cut short"], 2),
    ("bad.zst", _zstd_with_a_corrupt_frame(), ["zstd", "corrupt"], 2),
    ("open.json", ("[" + GOOD_RECORD + "," + GOOD_RECORD).encode(), ["not closed"], 2),
    ("extra.json", ("[" + GOOD_RECORD + "]\n" + GOOD_RECORD).encode(), ["after the array"], 2),
    ("empty.json", b"[\n]\n", ["the array is empty"], 2),
    ("object.json", b'{\n  "records": [\n    {"id": 1}\n  ]\n}\n', ["one JSON object spread"], 2),
    ("old.xz", b"\xfd7zXZ\x00\x00\x04", ["xz-compressed"], 2),
    ("empty.gz", gzip.compress(b""), ["no records"], 2),
]


@pytest.mark.parametrize(
    ("name", "data", "words", "code"), BROKEN_INPUTS, ids=[i[0] for i in BROKEN_INPUTS]
)
def test_broken_array_or_compressed_input(
    cli: Cli, bucket: Path, name: str, data: bytes, words: list[str], code: int
) -> None:
    (bucket / name).write_bytes(data)
    result = cli("run", *job_flags(bucket, name))
    assert_one_line_error(result, code, *words)
    # Refused before any chunk ran: no part, no receipt.
    assert not list(bucket.glob("results/**/*.jsonl"))
    assert not list(bucket.glob("metadata/b1/chunks/*"))


def test_not_json_lines(cli: Cli, bucket: Path) -> None:
    (bucket / "data.csv").write_text("id,name\n1,a\n")
    assert_one_line_error(
        cli("run", *job_flags(bucket, "data.csv")), 2, "does not look like JSON Lines"
    )


def test_missing_bucket(cli: Cli, tmp_path: Path) -> None:
    assert_one_line_error(cli("run", *job_flags(tmp_path / "nope")), 2, "does not exist")


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"batch_id": "../escape"}, ["batchId"]),
        ({"customer_id": "a/b"}, ["customerId"]),
        ({"tenant_id": "x..y"}, ["tenantId"]),
        ({"file": "../outside.jsonl"}, ["file", "'..'"]),
        ({"deployment": "PROD"}, ["deployment"]),
        ({"destination": "email"}, ["destination"]),
        ({"max_concurrent_chunks": "0"}, ["maxConcurrentChunks"]),
        ({"max_chunk_size": "-3"}, ["maxChunkSize"]),
        ({"workers": "0"}, ["workers"]),
        ({"processed_at": "now"}, ["processedAt"]),
        ({"progress": "loud"}, ["--progress"]),
    ],
)
def test_bad_values(
    cli: Cli, good_input: Path, overrides: dict[str, str], words: list[str]
) -> None:
    result = cli("run", *job_flags(good_input, **overrides))
    assert_one_line_error(result, 2, *words)
    assert not (good_input / "metadata").exists()  # nothing was written


def test_a_required_field_missing(cli: Cli, good_input: Path) -> None:
    flags = job_flags(good_input)
    i = flags.index("--customer-id")
    del flags[i : i + 2]
    assert_one_line_error(cli("run", *flags), 2, "customerId: is required")


def test_an_input_file_with_a_byte_order_mark(cli: Cli, good_input: Path, tmp_path: Path) -> None:
    event = {
        "bucket": str(good_input),
        "file": "in.jsonl",
        "customerId": "c",
        "tenantId": "t",
        "batchId": "b",
    }
    (tmp_path / "event.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(event).encode())
    result = cli("plan", "--input", str(tmp_path / "event.json"))
    assert result.returncode == 0, result.stderr


def test_bad_input_files(cli: Cli, good_input: Path, tmp_path: Path) -> None:
    (tmp_path / "event.json").write_text("{not json")
    assert_one_line_error(cli("run", "--input", str(tmp_path / "event.json")), 2, "not valid JSON")
    (tmp_path / "event.json").write_text(
        json.dumps({"bucket": str(good_input), "file": "in.jsonl"})
    )
    assert_one_line_error(cli("run", "--input", str(tmp_path / "event.json")), 2, "is required")


def test_usage_errors_are_one_line_too(cli: Cli, good_input: Path, tmp_path: Path) -> None:
    result = cli("run", *job_flags(good_input, max_chunk_size="lots"))
    assert_one_line_error(result, 2, "--max-chunk-size", "scm-batch run --help")
    assert_one_line_error(cli("frobnicate"), 2, "No such command")
    assert_one_line_error(cli("generate", str(tmp_path / "x"), "--records", "-5"), 2, "--records")
    (tmp_path / "file").write_text("")
    result = cli("generate", str(tmp_path / "file" / "x.jsonl"), "--records", "5")
    assert_one_line_error(result, 2, "not a directory")


def test_an_existing_batch_is_resumed_never_mixed_with_other_input(
    cli: Cli, good_input: Path
) -> None:
    first = cli("run", *job_flags(good_input), "--progress", "none")
    assert first.returncode == 0, first.stderr
    same = cli("run", *job_flags(good_input), "--progress", "none")
    assert same.returncode == 0, same.stderr
    assert "already complete" in same.stdout
    other = cli("run", *job_flags(good_input, customer_id="someone-else"))
    assert_one_line_error(other, 2, "planned with other input", "customer_id", "--overwrite")
    again = cli(
        "run",
        *job_flags(good_input, customer_id="someone-else"),
        "--overwrite",
        "--progress",
        "none",
    )
    assert again.returncode == 0, again.stderr
    assert "already complete" not in again.stdout


def test_generate_rejects_impossible_rates(cli: Cli, tmp_path: Path) -> None:
    result = cli(
        "generate",
        str(tmp_path / "x.jsonl"),
        "--records",
        "10",
        "--invalid-rate",
        "0.7",
        "--malformed-rate",
        "0.7",
    )
    assert_one_line_error(result, 2, "--invalid-rate")
    assert not (tmp_path / "x.jsonl").exists()


def test_version_and_help(cli: Cli) -> None:
    from scm_batch._version import __version__

    version = cli("--version")
    assert (version.returncode, version.stdout.strip()) == (0, __version__)
    helped = cli("run", "--help")
    assert helped.returncode == 0
    assert "--max-chunk-size" in helped.stdout

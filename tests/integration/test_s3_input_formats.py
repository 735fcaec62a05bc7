"""JSON arrays and compressed input with the bucket on a real S3 API server: the same parts as the
same batch on local disk, the compressed object streamed (never downloaded whole), its staged
chunks in the bucket and deleted once the batch completes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import Cli, run_cli
from tests.e2e.test_input_formats import FORMATS, record_texts
from tests.integration.servers import MotoServer
from tests.integration.test_s3_pipeline import new_bucket, s3_parts

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.slow

PROCESSED_AT = "2026-05-02T00:00:00.000Z"
NAMES = ["compact.json", "pretty.json.gz", "records.jsonl.bz2"]


def run_args(bucket: str, file: str, *extra: str) -> list[str]:
    return [
        "run",
        "--bucket", bucket,
        "--file", f"input/{file}",
        "--customer-id", "cust-s3",
        "--tenant-id", "ten-s3",
        "--batch-id", "s3batch",
        "--processed-at", PROCESSED_AT,
        "--max-concurrent-chunks", "5",
        "--target-total-records", "200000",
        "--min-chunk-size", "1",
        "--workers", "2",
        "--progress", "none",
        "--json",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("s3formats")
    texts = record_texts()
    for name in NAMES:
        (folder / name).write_bytes(FORMATS[name](texts))
    return folder


@pytest.mark.parametrize("name", NAMES)
def test_arrays_and_compressed_input_on_s3_match_local_disk(
    cli: Cli, s3: S3Client, moto: MotoServer, tmp_path: Path, inputs: Path, name: str
) -> None:
    local = tmp_path / "local"
    (local / "input").mkdir(parents=True)
    shutil.copyfile(inputs / name, local / "input" / name)
    reference = run_cli(*run_args(str(local), name))
    assert reference.returncode == 0, reference.stderr
    expected = {
        str(p.relative_to(local)): p.read_bytes()
        for p in sorted(local.glob("results/s3batch/*")) + sorted(local.glob("errors/s3batch/*"))
    }

    bucket = new_bucket(s3)
    s3.upload_file(str(inputs / name), bucket, f"input/{name}")
    result = cli(*run_args(f"s3://{bucket}", name, "--endpoint-url", moto.endpoint))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["totals"] == json.loads(reference.stdout)["totals"]
    assert s3_parts(s3, bucket) == expected
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="staged/").get("KeyCount", 0)
    assert listed == 0  # staged chunks deleted once the batch completed
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []

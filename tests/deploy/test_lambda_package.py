"""`make lambda-package` builds a package that runs on the Lambda runtime: the native engine in
it is x86_64 Linux code needing no glibc newer than the python3.12 runtime's (Amazon Linux 2023,
glibc 2.34), and it imports and sorts records.

The package is built for real (pip fetches the manylinux wheels from PyPI, maturin builds the
engine), into a copy of the make targets' output directories, so the test takes about half a
minute. Skipped without cargo, where the package carries the Python engine only (the Makefile
says so); ``make test`` has cargo where it builds the engine.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAMBDA_GLIBC = (2, 34)  # the python3.12 runtime: Amazon Linux 2023
ELF_X86_64 = 0x3E


def glibc_versions(shared_object: bytes) -> set[tuple[int, int]]:
    """The GLIBC_x.y symbol versions a shared object names (its version needs and the symbols'
    versions are these strings in its dynamic string table)."""
    found = re.findall(rb"GLIBC_(\d+)\.(\d+)", shared_object)
    return {(int(major), int(minor)) for major, minor in found}


def test_the_glibc_reader_finds_the_newest_version() -> None:
    text = b"\0GLIBC_2.2.5\0GLIBC_2.34\0GLIBC_2.14\0memcpy\0"
    assert max(glibc_versions(text)) == (2, 34)
    assert max(glibc_versions(b"GLIBC_2.35\0")) > LAMBDA_GLIBC


@pytest.fixture(scope="module")
def package() -> Path:
    if shutil.which("cargo") is None:
        pytest.skip("cargo not found: the Lambda package carries the Python engine only")
    built = subprocess.run(
        ["make", "--no-print-directory", "lambda-package"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    return ROOT / "dist" / "scm-batch-lambda.zip"


def test_the_lambda_package_carries_a_native_engine_for_the_lambda_runtime(
    package: Path, tmp_path: Path
) -> None:
    with zipfile.ZipFile(package) as archive:
        names = [n for n in archive.namelist() if n.startswith("scm_batch_native/")]
        objects = [n for n in names if n.endswith(".so")]
        assert objects == ["scm_batch_native/scm_batch_native.abi3.so"], names
        code = archive.read(objects[0])
        archive.extractall(tmp_path, [n for n in archive.namelist() if "scm_batch" in n])
    assert code[:4] == b"\x7fELF"
    assert int.from_bytes(code[18:20], "little") == ELF_X86_64
    versions = glibc_versions(code)
    assert versions, "no GLIBC symbol versions found: not a glibc build"
    assert max(versions) <= LAMBDA_GLIBC, f"needs glibc {max(versions)}, Lambda has 2.34"

    # The abi3 build imports on this interpreter too: it sorts a record as the engine should.
    probe = (
        "import json, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import scm_batch_native as n\n"
        "assert n.__file__.startswith(sys.argv[1]), n.__file__\n"
        "s = n.Stamps(b'\"t\"', b'\"c\"', b'\"u\"', b'\"g-', b'\"i-')\n"
        "line = json.dumps({'id': 'R', 'name': 'Ada', 'email': 'a@b.co', 'status': 'active',"
        " 'createdAt': '2024-01-31T12:00:00Z', 'updatedAt': '2024-01-31T12:00:00Z'}).encode()\n"
        "out, lines, blanks, valid, deferred, _ = n.sort_lines(line, 16, 1000, s, False)\n"
        "print(json.dumps([json.loads(out), valid, deferred]))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-I", "-c", probe, str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    record, valid, deferred = json.loads(ran.stdout)
    assert (valid, deferred) == (1, [])
    assert record["id"] == "i-000000000010"
    assert record["originalId"] == "R"

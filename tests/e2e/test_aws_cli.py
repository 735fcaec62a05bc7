"""``scm-batch aws definition`` as a user runs it: what it prints, and what it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from statelint.linter import Linter  # type: ignore[import-untyped]

from tests.conftest import Cli
from tests.deploy.hcl import MODULE
from tests.unit.test_aws_definition import LINTER_LAGS_AWS


def test_the_default_definition_reads_any_plan_from_s3_and_names_the_account(cli: Cli) -> None:
    ran = cli(
        "aws", "definition", "--account", "210987654321", "--region", "eu-west-1",
        "--max-concurrent-chunks", "20",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    definition = json.loads(ran.stdout)
    chunk_map = definition["States"]["ProcessChunksInParallel"]
    # Distributed unless asked otherwise: an inline Map refuses plans of more than 100 chunks.
    assert chunk_map["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert chunk_map["MaxConcurrency"] == 20
    arn = definition["States"]["InitializeBatchProcessing"]["Parameters"]["FunctionName"]
    assert arn == "arn:aws:lambda:eu-west-1:210987654321:function:scm-batch-processor-read-s3"
    assert [p for p in Linter.validate(definition) if p != LINTER_LAGS_AWS] == []


def test_the_terraform_template_written_to_a_file_is_the_module_s(cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "machine.tftpl"
    ran = cli("aws", "definition", "--terraform", "-o", str(target))
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == ""
    template = MODULE / "state-machine.asl.json.tftpl"
    assert target.read_text(encoding="utf-8") == template.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "--account: give the 12-digit account id (or --terraform)"),
        (("--account", "12345"), "--account: give the 12-digit account id (or --terraform)"),
        (
            ("--account", "210987654321", "--map", "sideways"),
            "--map: must be auto, inline or distributed, not 'sideways'",
        ),
        (
            ("--account", "210987654321", "--lambda-timeout", "901"),
            "--lambda-timeout: must be between 1 and 900 (got 901)",
        ),
    ],
    ids=["no-account", "short-account", "bad-map", "long-timeout"],
)
def test_bad_options_are_one_line_errors(cli: Cli, args: tuple[str, ...], message: str) -> None:
    ran = cli("aws", "definition", *args)
    assert ran.returncode == 2
    assert ran.stdout == ""
    assert message in ran.stderr
    assert "Traceback" not in ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1

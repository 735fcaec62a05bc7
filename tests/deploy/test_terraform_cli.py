"""The Terraform module and its example through the real Terraform CLI, offline.

Where a ``terraform`` binary is on PATH and the AWS provider is in a local filesystem mirror
(``SCM_BATCH_TF_PROVIDER_MIRROR``, else one of :data:`MIRROR_CANDIDATES`): ``terraform init``
from the mirror (a CLI configuration of this test's own that allows nothing else, so nothing is
downloaded), ``terraform validate`` on the module and on the example, and
``deploy/terraform/tests/definition.tftest.hcl``, a ``terraform test`` with a mocked AWS
provider, checking that the module's ``templatefile()`` renders exactly what
``scm-batch aws definition`` prints for the same values. Where either is missing the tests skip
with the reason (``SCM_BATCH_REQUIRE_TERRAFORM=1`` makes that a failure).

Everything runs on a copy of ``deploy/terraform`` in a temporary directory, with Terraform's data
directory there too: no ``.terraform`` directory or lock file lands in the repository. The copy
keeps the tree's layout, so the example's ``source = "../.."`` is the copied module.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.conftest import run_cli
from tests.deploy.hcl import MODULE

EXAMPLE = Path("examples") / "minimal"  # inside the module; its module source is "../.."
TERRAFORM_TEST = Path("tests") / "definition.tftest.hcl"
TEST_RUN = "definition_is_the_generated_one"

MIRROR_VARIABLE = "SCM_BATCH_TF_PROVIDER_MIRROR"
REQUIRE_VARIABLE = "SCM_BATCH_REQUIRE_TERRAFORM"
# Terraform's own implied local mirror directories on Linux, and where these machines keep one.
MIRROR_CANDIDATES = (
    Path("/opt/tf-plugins"),
    Path.home() / ".terraform.d" / "plugins",
    Path.home() / ".local" / "share" / "terraform" / "plugins",
    Path("/usr/local/share/terraform/plugins"),
    Path("/usr/share/terraform/plugins"),
)
AWS_PROVIDER = Path("registry.terraform.io") / "hashicorp" / "aws"
# The module's constraint (versions.tf): >= 5.80, < 6.0.
PROVIDER_LOWEST, PROVIDER_BEYOND = (5, 80, 0), (6, 0, 0)
TERRAFORM_LOWEST = (1, 5, 0)  # the module's required_version
TERRAFORM_MOCKS_AT_PLAN = (1, 11, 0)  # override_during = plan, which the mocked test uses

# The options of `scm-batch aws definition` that give the values definition.tftest.hcl gives the
# module and its mocked resources (account, region, names; the four numbers, none a default).
DEFINITION_OPTIONS = (
    *("--account", "210987654321", "--region", "eu-west-1", "--partition", "aws"),
    *("--job-queue", "scm-batch-chunks", "--job-definition", "scm-batch-process-chunk:1"),
    *("--status-queue", "batch-proc", "--map", "distributed"),
    *("--max-concurrent-chunks", "120", "--lambda-timeout", "600"),
    *("--batch-job-timeout", "7200", "--batch-job-attempts", "2"),
    *(
        "--sse-kms-key",
        "arn:aws:kms:eu-west-1:210987654321:key/0a1b2c3d-4e5f-4a6b-8c9d-0e1f2a3b4c5d",
    ),
)

_IGNORED = shutil.ignore_patterns(
    ".terraform",
    ".terraform.lock.hcl",
    "*.tfstate",
    "*.tfstate.*",
    "*.tfplan",
    "*.tfvars",  # a user's filled-in terraform.tfvars would feed `terraform test`
    "*.tfvars.json",
    "crash.log",
)
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


# ---- finding the CLI and the provider -----------------------------------------------------------
def version_of(text: str) -> tuple[int, int, int] | None:
    """``5.100.0`` → ``(5, 100, 0)``; None for anything else (pre-releases among them)."""
    match = _VERSION.match(text)
    return None if match is None else (int(match[1]), int(match[2]), int(match[3]))


def terraform_platform() -> str:
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine, machine
    )
    return f"{platform.system().lower()}_{arch}"


def has_aws_provider(mirror: Path) -> bool:
    """Whether ``mirror`` (a filesystem mirror, unpacked or packed layout) holds an AWS provider
    the module accepts, for this platform."""
    target = terraform_platform()
    unpacked = (mirror / AWS_PROVIDER).glob(f"*/{target}/terraform-provider-aws*")
    packed = (mirror / AWS_PROVIDER).glob(f"terraform-provider-aws_*_{target}.zip")
    found = [path.parent.parent.name for path in unpacked] + [
        path.name.removeprefix("terraform-provider-aws_").removesuffix(f"_{target}.zip")
        for path in packed
    ]
    versions = [v for v in map(version_of, found) if v is not None]
    return any(PROVIDER_LOWEST <= v < PROVIDER_BEYOND for v in versions)


@dataclass(frozen=True)
class Tools:
    terraform: Path
    version: tuple[int, int, int]
    mirror: Path


def find_tools() -> Tools | str:
    """The Terraform CLI and a provider mirror, or why they cannot be used."""
    found = shutil.which("terraform")
    if found is None:
        return "no terraform CLI on PATH"
    shown = subprocess.run(
        [found, "version", "-json"], capture_output=True, text=True, timeout=60, check=False
    )
    try:
        version = version_of(json.loads(shown.stdout)["terraform_version"])
    except (ValueError, KeyError):
        version = None
    if version is None or version < TERRAFORM_LOWEST:
        return f"{found} is not Terraform 1.5 or later (the module's required_version)"
    wanted = f"hashicorp/aws >= 5.80, < 6.0 for {terraform_platform()}"
    given = os.environ.get(MIRROR_VARIABLE)
    if given:
        if not has_aws_provider(Path(given)):
            # A mirror named but wrong is a mistake to point out, not a reason to skip.
            pytest.fail(f"{MIRROR_VARIABLE}={given} holds no {wanted}", pytrace=False)
        return Tools(Path(found), version, Path(given))
    for candidate in MIRROR_CANDIDATES:
        if has_aws_provider(candidate):
            return Tools(Path(found), version, candidate)
    return (
        f"no filesystem mirror with {wanted} (set {MIRROR_VARIABLE}; looked in "
        + ", ".join(map(str, MIRROR_CANDIDATES))
        + ")"
    )


def unavailable(reason: str) -> NoReturn:
    if os.environ.get(REQUIRE_VARIABLE) == "1":
        pytest.fail(f"{reason} ({REQUIRE_VARIABLE}=1)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


# Decided once, at collection: a missing CLI or mirror skips the whole file in one line.
TOOLS = find_tools()
if isinstance(TOOLS, str):
    unavailable(TOOLS)


def hcl_string(text: str) -> str:
    """``text`` as an HCL string literal (JSON's escapes, and no template sequences)."""
    return json.dumps(text).replace("${", "$${").replace("%{", "%%{")


@dataclass(frozen=True)
class Terraform:
    """The CLI, with an environment that installs providers from the mirror and nowhere else."""

    binary: Path
    version: tuple[int, int, int]
    env: dict[str, str] = field(repr=False)

    def run(
        self, *args: str, cwd: Path, data_dir: Path, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binary), *args],
            cwd=cwd,
            env={**self.env, "TF_DATA_DIR": str(data_dir)},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def init(self, directory: Path, data_dir: Path) -> None:
        ran = self.run(
            "init", "-backend=false", "-input=false", "-no-color", cwd=directory, data_dir=data_dir
        )
        assert ran.returncode == 0, f"terraform init in {directory} failed:\n{ran.stderr}"


@pytest.fixture(scope="module")
def terraform(tmp_path_factory: pytest.TempPathFactory) -> Terraform:
    assert isinstance(TOOLS, Tools)
    # The mirror only: no `direct` block, so a provider it lacks fails init instead of being
    # downloaded. No plugin cache: from an unpacked mirror init links the provider (~1 s).
    config = tmp_path_factory.mktemp("terraform-cli") / "terraformrc"
    config.write_text(
        "disable_checkpoint = true\n"
        "provider_installation {\n"
        "  filesystem_mirror {\n"
        f"    path    = {hcl_string(str(TOOLS.mirror))}\n"
        '    include = ["registry.terraform.io/hashicorp/*"]\n'
        "  }\n"
        "}\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    env.update(
        TF_CLI_CONFIG_FILE=str(config),
        TF_IN_AUTOMATION="1",
        TF_INPUT="0",
        CHECKPOINT_DISABLE="1",
    )
    return Terraform(TOOLS.terraform, TOOLS.version, env)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of deploy/terraform (as <tmp>/deploy/terraform: the same layout)."""
    copy = tmp_path_factory.mktemp("workspace") / "deploy" / "terraform"
    shutil.copytree(MODULE, copy, ignore=_IGNORED)
    return copy


@pytest.fixture(scope="module")
def initialised_module(terraform: Terraform, workspace: Path) -> Path:
    terraform.init(workspace, workspace.parent / "tf-data-module")
    return workspace


# ---- terraform validate -------------------------------------------------------------------------
def validated(terraform: Terraform, directory: Path, data_dir: Path) -> None:
    """``terraform validate`` passes, with no error; its warnings are shown as warnings."""
    ran = terraform.run("validate", "-json", "-no-color", cwd=directory, data_dir=data_dir)
    report = json.loads(ran.stdout)
    lines = [
        f"{d['severity']}: {d['summary']}: {d.get('detail', '')}"
        + (f" ({d['range']['filename']}:{d['range']['start']['line']})" if "range" in d else "")
        for d in report["diagnostics"]
    ]
    assert report["valid"], "\n".join(lines)
    assert ran.returncode == 0, ran.stderr
    for line in lines:
        warnings.warn(f"terraform validate {directory.name}: {line}", stacklevel=2)


def test_the_module_validates(terraform: Terraform, initialised_module: Path) -> None:
    validated(terraform, initialised_module, initialised_module.parent / "tf-data-module")


def test_the_example_validates(terraform: Terraform, workspace: Path) -> None:
    example = workspace / EXAMPLE
    data_dir = workspace.parent / "tf-data-example"
    terraform.init(example, data_dir)
    validated(terraform, example, data_dir)


# ---- terraform test: the rendered definition ----------------------------------------------------
@dataclass
class TerraformTestRun:
    """What ``terraform test -json -verbose`` reported."""

    returncode: int
    summary: str  # its last line (Success! / Failure! ...), or its stderr
    statuses: dict[str, str] = field(default_factory=dict)  # run block → pass / fail / error
    diagnostics: list[str] = field(default_factory=list)
    rendered: str | None = None  # the planned aws_sfn_state_machine.this definition
    unknown: bool = False  # the plan left that definition unknown


def run_terraform_test(
    terraform: Terraform, module: Path, variables: dict[str, Any]
) -> TerraformTestRun:
    if terraform.version < TERRAFORM_MOCKS_AT_PLAN:
        unavailable(
            f"terraform {'.'.join(map(str, terraform.version))} cannot run {TERRAFORM_TEST} "
            "(override_during = plan needs 1.11)"
        )
    var_file = module.parent / "definition-test.tfvars.json"
    var_file.write_text(json.dumps(variables), encoding="utf-8")
    ran = terraform.run(
        *("test", "-json", "-verbose", "-no-color", f"-var-file={var_file}"),
        f"-filter={TERRAFORM_TEST}",
        cwd=module,
        data_dir=module.parent / "tf-data-module",
    )
    outcome = TerraformTestRun(ran.returncode, ran.stderr.strip())
    for line in ran.stdout.splitlines():
        event = json.loads(line)
        kind = event["type"]
        if kind == "test_run" and "status" in event["test_run"]:
            outcome.statuses[event["test_run"]["run"]] = event["test_run"]["status"]
        elif kind == "diagnostic":
            diagnostic = event["diagnostic"]
            outcome.diagnostics.append(
                f"{diagnostic['severity']}: {diagnostic['summary']}: {diagnostic.get('detail')}"
            )
        elif kind == "test_plan" and event.get("@testrun") == TEST_RUN:
            [machine] = [
                change
                for change in event["test_plan"]["resource_changes"]
                if change["address"] == "aws_sfn_state_machine.this"
            ]
            outcome.rendered = machine["change"]["after"].get("definition")
            outcome.unknown = bool(machine["change"]["after_unknown"].get("definition"))
        elif kind == "test_summary":
            outcome.summary = event["@message"]
    return outcome


def differences(got: Any, want: Any, path: str = "$") -> Iterator[str]:
    """Where two JSON documents differ, as paths."""
    if isinstance(got, dict) and isinstance(want, dict):
        for key in sorted(got.keys() | want.keys()):
            if key not in want:
                yield f"{path}.{key}: not expected"
            elif key not in got:
                yield f"{path}.{key}: missing"
            else:
                yield from differences(got[key], want[key], f"{path}.{key}")
    elif isinstance(got, list) and isinstance(want, list) and len(got) == len(want):
        for index, (left, right) in enumerate(zip(got, want, strict=True)):
            yield from differences(left, right, f"{path}[{index}]")
    elif got != want:
        yield f"{path}: {got!r} != {want!r}"


@pytest.fixture(scope="module")
def expected_definition(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What ``scm-batch aws definition`` prints for the values the mocked test gives."""
    output = tmp_path_factory.mktemp("definition") / "definition.json"
    ran = run_cli("aws", "definition", *DEFINITION_OPTIONS, "--output", str(output))
    assert ran.returncode == 0, ran.stderr
    document: dict[str, Any] = json.loads(output.read_text(encoding="utf-8"))
    return document


@pytest.fixture(scope="module")
def lambda_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in for the package: the plan hashes it, nothing uploads it."""
    path = tmp_path_factory.mktemp("lambda") / "scm-batch-lambda.zip"
    path.write_bytes(b"not a real package")
    return path


def test_terraform_renders_the_definition_the_generator_prints(
    terraform: Terraform,
    initialised_module: Path,
    expected_definition: dict[str, Any],
    lambda_package: Path,
) -> None:
    # The comparison is not vacuous: the generated definition names the mocked resources and
    # carries the numbers, none of them a default.
    states = expected_definition["States"]
    assert states["ProcessChunksInParallel"]["MaxConcurrency"] == 120
    text = json.dumps(expected_definition)
    assert text.count("arn:aws:lambda:eu-west-1:210987654321:function:") == 7
    assert "job-definition/scm-batch-process-chunk:1" in text

    outcome = run_terraform_test(
        terraform,
        initialised_module,
        {
            "expected_definition": json.dumps(expected_definition, indent=2),
            "lambda_package_path": str(lambda_package),
        },
    )
    # Python's own comparison of what Terraform planned, then Terraform's verdict.
    assert not outcome.unknown, (
        f"the planned definition is unknown: a value it takes is neither mocked nor overridden "
        f"in {TERRAFORM_TEST}"
    )
    assert outcome.rendered is not None, "\n".join([outcome.summary, *outcome.diagnostics])
    rendered = json.loads(outcome.rendered)
    assert rendered == expected_definition, "\n".join(
        list(differences(rendered, expected_definition))[:20]
    )
    assert outcome.statuses == {TEST_RUN: "pass"}, "\n".join(outcome.diagnostics)
    assert outcome.returncode == 0, outcome.summary
    assert outcome.summary.startswith("Success!"), outcome.summary


def test_terraform_test_fails_when_the_definition_differs(
    terraform: Terraform,
    initialised_module: Path,
    expected_definition: dict[str, Any],
    lambda_package: Path,
) -> None:
    """The terraform test's assertion can fail: one number changed in the expected definition."""
    changed = json.loads(json.dumps(expected_definition))
    changed["States"]["ProcessChunksInParallel"]["MaxConcurrency"] = 121
    outcome = run_terraform_test(
        terraform,
        initialised_module,
        {"expected_definition": json.dumps(changed), "lambda_package_path": str(lambda_package)},
    )
    assert outcome.returncode != 0
    assert outcome.statuses == {TEST_RUN: "fail"}, outcome.diagnostics
    [failure] = outcome.diagnostics
    assert failure.startswith("error: Test assertion failed: "), failure
    assert failure.endswith("states that differ: ProcessChunksInParallel."), failure
    assert outcome.rendered is not None
    assert list(differences(json.loads(outcome.rendered), changed)) == [
        "$.States.ProcessChunksInParallel.MaxConcurrency: 120 != 121"
    ]

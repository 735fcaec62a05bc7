"""One settings loader for the command line and the AWS side: every setting read the same way
wherever it runs, a flag over its variable over the default, errors naming their source."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest

from scm_batch.cli import flags
from scm_batch.errors import ConfigError
from scm_batch.retry import RetryPolicy
from scm_batch.settings import (
    NUMBER,
    PERCENTAGE,
    SETTINGS,
    SWITCH,
    TEXT,
    WHOLE,
    Group,
    JobDefaults,
    Setting,
    Settings,
    aws_settings,
    load_settings,
)

README = Path(__file__).parents[2] / "README.md"


def at(settings: Settings, path: tuple[str, ...]) -> Any:
    """The value at ``path`` (JSON names) in ``settings``."""
    value: Any = settings
    for name in path:
        fields = {f.encode_name: f.name for f in msgspec.structs.fields(value)}
        value = getattr(value, fields[name])
    return value


def sample(setting: Setting) -> tuple[str, object]:
    """A good value of ``setting`` as its variable spells it, and as it is read."""
    kind = setting.kind
    if kind.choices:
        return kind.choices[-1], kind.choices[-1]
    return {
        WHOLE: ("7", 7),
        NUMBER: ("2.5", 2.5),
        PERCENTAGE: ("12.5", 12.5),
        SWITCH: ("true", True),
        TEXT: ("some-value", "some-value"),
    }[kind]


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.env], ids=lambda s: s.env)
def test_every_variable_means_the_same_on_the_command_line_and_on_aws(setting: Setting) -> None:
    assert setting.env is not None
    raw, value = sample(setting)
    for loaded in (load_settings({setting.env: raw}), aws_settings({setting.env: raw})):
        for path in setting.paths:
            assert at(loaded, path) == value


def test_a_flag_wins_over_its_variable_which_wins_over_the_default() -> None:
    env = {"SCM_BATCH_WORKERS": "3", "KAFKA_TOPIC": "from-env", "SCM_BATCH_STORAGE": "local"}
    given = {"workers": 5, "kafka_topic": None}  # None: the flag was not given
    settings = load_settings(env, given)
    assert settings.run.workers == 5
    assert settings.run.delivery.kafka.topic == "from-env"
    assert load_settings(env).run.workers == 3
    assert load_settings({}).run.retry == RetryPolicy()
    # A place's defaults sit under the variables: on AWS a bare bucket name is S3 unless set.
    assert aws_settings({}).run.storage.kind == "s3"
    assert aws_settings(env).run.storage.kind == "local"
    assert aws_settings({}).run.workers == load_settings({}, {"workers": 1}).run.workers


def test_a_bad_value_names_the_flag_or_the_variable_it_came_from() -> None:
    with pytest.raises(ConfigError) as from_flag:
        load_settings({}, {"storage": "ftp"})
    assert from_flag.value.field == "--storage"
    assert "must be auto, local or s3 (got 'ftp')" in from_flag.value.message
    for name, raw in (
        ("SCM_BATCH_STORAGE", "ftp"),
        ("SCM_BATCH_WORKERS", "-2"),
        ("SCM_BATCH_RETRY_BASE_DELAY", "nan"),
        ("SCM_BATCH_TOLERATED_FAILURE_PERCENTAGE", "101"),
        ("KAFKA_TOPIC_POLICY", "maybe"),
    ):
        with pytest.raises(ConfigError) as from_env:
            load_settings({name: raw})
        assert from_env.value.field == name
    # --overwrite has no variable: one in the environment changes nothing.
    assert load_settings({"SCM_BATCH_OVERWRITE": "true"}).run.overwrite is False


def test_what_an_input_leaves_out_comes_from_the_configuration() -> None:
    settings = load_settings(
        {"SCM_BATCH_MAX_CONCURRENT_CHUNKS": "8", "SCM_BATCH_DESTINATION": "none"}
    )
    assert settings.job_defaults == JobDefaults(max_concurrent_chunks=8, destination="none")
    filled = settings.job_defaults.fill({"maxConcurrentChunks": 3, "batchId": "b"})
    assert filled == {"maxConcurrentChunks": 3, "destination": "none", "batchId": "b"}


def test_every_setting_with_a_flag_is_an_option_of_the_command_line() -> None:
    offered = {flag.name for group in typing.get_args(Group) for flag in flags.of_settings(group)}
    assert offered == {s.name for s in SETTINGS if s.flag is not None}
    help_text = subprocess.run(
        [sys.executable, "-m", "scm_batch", "run", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout
    for setting in SETTINGS:
        if setting.flag is not None:
            assert setting.flag.split("/")[0] in help_text


def test_a_command_reads_only_the_groups_of_settings_it_has_a_use_for() -> None:
    env = {"SCM_BATCH_RETRY_ATTEMPTS": "three", "SCM_BATCH_STORAGE": "s3"}
    assert load_settings(env, groups={"storage"}).run.storage.kind == "s3"
    with pytest.raises(ConfigError, match="SCM_BATCH_RETRY_ATTEMPTS"):
        load_settings(env, groups={"storage", "execution"})


def test_text_is_taken_as_it_is_and_switches_as_the_command_line_spells_them() -> None:
    settings = load_settings({"KAFKA_SASL_PASSWORD": " pass word ", "SCM_BATCH_COUNT_RECORDS": "y"})
    assert settings.run.delivery.kafka.sasl_password == " pass word "
    assert settings.run.plan.count_records is True
    assert load_settings({"SCM_BATCH_COUNT_RECORDS": " F "}).run.plan.count_records is False
    assert load_settings({"SCM_BATCH_WORKERS": "   "}).run.workers == Settings().run.workers


def test_every_setting_is_in_the_readme_with_its_flag_and_variable() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Configuration") : text.index("## Performance")]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    for setting in SETTINGS:
        names = [n for n in (setting.env, setting.flag and setting.flag.split("/")[0]) if n]
        documented = [
            row for row in rows if all(re.search(rf"`{re.escape(n)}`", row) for n in names)
        ]
        if setting.env in ("KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"):
            documented = [row for row in rows if f"`{setting.env}`" in row]
        assert documented, f"README's configuration does not document {names}"

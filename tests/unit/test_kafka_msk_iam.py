"""MSK IAM needs a confluent-kafka that runs the OAUTHBEARER callback without ``poll()``."""

from __future__ import annotations

import re
import sys
import tomllib
import types
from pathlib import Path

import pytest

from scm_batch.errors import ConfigError
from scm_batch.sinks import kafka
from scm_batch.sinks.options import KafkaOptions

ROOT = Path(__file__).resolve().parents[2]
MSK = KafkaOptions(brokers="b-1.msk.example:9098", msk_iam_region="eu-west-1")


def test_the_project_requires_a_confluent_kafka_whose_admin_client_authenticates_alone() -> None:
    # Before 2.13 the preflight's list_topics never ran the token callback: every MSK IAM batch
    # was refused as "cannot reach the Kafka brokers".
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    [requirement] = [d for d in project["dependencies"] if d.startswith("confluent-kafka")]
    floor = re.fullmatch(r"confluent-kafka>=(\d+)\.(\d+)(?:\.\d+)?", requirement)
    assert floor is not None, requirement
    assert (int(floor[1]), int(floor[2])) >= (2, 13)


@pytest.mark.parametrize("installed", ["2.12.1", "2.3.0", "1.9.2"])
def test_msk_iam_on_an_older_confluent_kafka_is_refused_with_what_to_install(
    installed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kafka, "confluent_kafka_version", lambda: installed)
    with pytest.raises(
        ConfigError, match=rf"confluent-kafka 2\.13 or later \(this is {installed}\)"
    ):
        kafka.client_config(MSK)


@pytest.mark.parametrize("installed", ["2.13.0", "2.16.1", "3.0.0rc1"])
def test_msk_iam_on_a_recent_confluent_kafka_goes_on_to_the_signer(
    installed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kafka, "confluent_kafka_version", lambda: installed)
    signer = types.ModuleType("aws_msk_iam_sasl_signer")
    signer.MSKAuthTokenProvider = types.SimpleNamespace(  # type: ignore[attr-defined]
        generate_auth_token=lambda region: (f"token-for-{region}", 60_000)
    )
    monkeypatch.setitem(sys.modules, "aws_msk_iam_sasl_signer", signer)
    config = kafka.client_config(MSK)
    assert config["sasl.mechanism"] == "OAUTHBEARER"
    assert config["oauth_cb"]("") == ("token-for-eu-west-1", 60.0)


def test_other_security_settings_never_ask_for_the_version(monkeypatch: pytest.MonkeyPatch) -> None:
    def unexpected() -> str:
        raise AssertionError("asked")

    monkeypatch.setattr(kafka, "confluent_kafka_version", unexpected)
    config = kafka.client_config(KafkaOptions(brokers="127.0.0.1:9092"))
    assert config["security.protocol"] == "PLAINTEXT"

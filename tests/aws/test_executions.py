"""Whether an execution still runs: what lets a local run take over the lease of an execution
that ended, asked in the execution's own region (a local run may have none configured)."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from scm_batch.aws.executions import execution_running


def test_an_execution_runs_until_it_stops_and_an_unknown_one_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        sfn = boto3.client("stepfunctions", region_name="eu-west-1")
        definition = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
        machine = sfn.create_state_machine(
            name="m",
            definition=json.dumps(definition),
            roleArn="arn:aws:iam::123456789012:role/r",
        )["stateMachineArn"]
        execution = sfn.start_execution(stateMachineArn=machine)["executionArn"]
        assert execution_running(execution) is True
        sfn.stop_execution(executionArn=execution)
        assert execution_running(execution) is False
        assert execution_running(execution.rsplit(":", 1)[0] + ":never-started") is False

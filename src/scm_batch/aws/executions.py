"""Whether a Step Functions execution still runs: what tells a batch's lease, held by an
execution that ended (it never lets go), from one held by an execution still going on."""

from __future__ import annotations

import boto3
import botocore.exceptions


def execution_running(execution_arn: str) -> bool | None:
    """Whether the execution runs; ``None`` when that cannot be told (no permission, no
    answer): its claim then stands until it expires."""
    # The execution's own region (arn:aws:states:REGION:…): a local run may have none set.
    region = execution_arn.split(":")[3] if execution_arn.count(":") >= 3 else ""
    client = boto3.client("stepfunctions", region_name=region or None)
    try:
        status = client.describe_execution(executionArn=execution_arn)["status"]
    except botocore.exceptions.ClientError as error:
        code: object = error.response.get("Error", {}).get("Code")
        return False if code == "ExecutionDoesNotExist" else None
    except botocore.exceptions.BotoCoreError:
        return None
    return bool(status == "RUNNING")

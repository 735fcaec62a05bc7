# One role per function, per Batch job purpose, for the state machine and for the manifest
# trigger, each allowed what its code does and nothing else.
#
# s3:ListBucket is granted on the bucket without a prefix condition where the code checks for an
# object that may be missing (the batch's plan, a chunk's manifest) or stats the input: S3 answers
# HEAD of a missing key with 404 only to a principal that may list the bucket (403 otherwise),
# and HEAD of the bucket (which tells a missing bucket from a missing key) needs it too. It shows
# key names, never contents.
#
# Resource "*" appears only where the action has no resource type (so IAM accepts nothing else):
# ecr:GetAuthorizationToken, batch:DescribeJobs, ec2:DescribeSubnets (functions in a VPC), the
# CloudWatch Logs delivery actions of Step Functions, and the managed X-Ray / ENI policies. Each
# says so where it is; tests/deploy/test_terraform_static.py holds the list.

locals {
  xray_policy_arn = "arn:${local.partition}:iam::aws:policy/AWSXRayDaemonWriteAccess"
  # ENI management for functions in a VPC (ec2:CreateNetworkInterface and friends on "*": the
  # network interfaces do not exist before Lambda creates them).
  lambda_vpc_policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AWSLambdaENIManagementAccess"
}

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "lambda" {
  for_each = local.lambda_functions

  name               = "${var.name_prefix}-${each.key}"
  description        = "Runs ${each.value.function_name}"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
  tags               = local.tags
}

# ---- What every function needs: its own log group, the keys ----------------------------------

data "aws_iam_policy_document" "lambda_base" {
  for_each = local.lambda_functions

  statement {
    sid       = "OwnLogGroup"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.lambda[each.key].arn}:*"]
  }

  statement {
    sid       = "Keys"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = local.usable_kms_key_arns
  }

  # In a VPC, Lambda also looks up the subnets of its network interfaces (the ENI management
  # policy attached below has the rest). Describe actions have no resource type: "*" only.
  dynamic "statement" {
    for_each = local.lambda_in_vpc ? [1] : []
    content {
      sid       = "VpcSubnets"
      actions   = ["ec2:DescribeSubnets"]
      resources = ["*"]
    }
  }
}

resource "aws_iam_role_policy" "lambda_base" {
  for_each = local.lambda_functions

  name   = "logs-and-keys"
  role   = aws_iam_role.lambda[each.key].id
  policy = data.aws_iam_policy_document.lambda_base[each.key].json
}

resource "aws_iam_role_policy_attachment" "lambda_xray" {
  for_each = local.lambda_functions

  role       = aws_iam_role.lambda[each.key].name
  policy_arn = local.xray_policy_arn
}

resource "aws_iam_role_policy_attachment" "lambda_vpc" {
  for_each = local.lambda_in_vpc ? local.lambda_functions : {}

  role       = aws_iam_role.lambda[each.key].name
  policy_arn = local.lambda_vpc_policy_arn
}

# ---- What each function does ------------------------------------------------------------------

# InitializeBatchProcessing: reads the manifest (when started by one), looks for a stored plan
# (metadata/), and stats/samples the input of a batch that has none.
data "aws_iam_policy_document" "read_s3" {
  statement {
    sid       = "ReadInputAndManifests"
    actions   = ["s3:GetObject"]
    resources = [local.objects_arn]
  }
  statement {
    sid       = "TellMissingFromForbidden"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]
  }
}

# ValidateBatchConfig: the batch's lease for the execution (metadata/{batch}.lease, taken over
# only from an execution that no longer runs), a stored plan under the batch id (metadata/), the
# input it was made from, and a preflight of the destinations (SQS Core queue attributes, Kafka
# topic metadata).
data "aws_iam_policy_document" "validate_data" {
  statement {
    sid       = "ReadPlanAndInput"
    actions   = ["s3:GetObject"]
    resources = [local.objects_arn]
  }
  statement {
    sid       = "TellMissingFromForbidden"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]
  }
  statement {
    sid       = "TakeTheBatchLease"
    actions   = ["s3:PutObject"]
    resources = [local.prefix_arns["metadata"]]
  }
  statement {
    sid       = "AskWhetherTheLeaseHolderRuns"
    actions   = ["states:DescribeExecution"]
    resources = [local.state_machine_runs_arn]
  }
  dynamic "statement" {
    for_each = local.sqs_core_enabled ? [1] : []
    content {
      sid       = "SqsCorePreflight"
      actions   = ["sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
      resources = [local.sqs_core_queue_arn]
    }
  }
  dynamic "statement" {
    for_each = local.msk_enabled ? [1] : []
    content {
      sid       = "KafkaPreflightCluster"
      actions   = ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"]
      resources = [var.msk_cluster_arn]
    }
  }
  dynamic "statement" {
    for_each = local.msk_enabled ? [1] : []
    content {
      sid       = "KafkaPreflightTopics"
      actions   = ["kafka-cluster:DescribeTopic"]
      resources = [local.msk_records_topic_arn, local.msk_notification_topic_arn]
    }
  }
}

# CalculateChunks: reads the input around chunk boundaries (or whole: a JSON array is scanned, a
# compressed input decompressed and its chunks staged under staged/), writes the plan and its
# items under metadata/, and on a resumed batch aborts the uploads killed attempts left open and
# withdraws the batch's recorded outcome.
data "aws_iam_policy_document" "calculate_chunks" {
  statement {
    sid       = "ReadInputAndPlan"
    actions   = ["s3:GetObject"]
    resources = [local.objects_arn]
  }
  statement {
    sid       = "ListBatchObjects"
    actions   = ["s3:ListBucket", "s3:ListBucketMultipartUploads"]
    resources = [local.bucket_arn]
  }
  statement {
    sid       = "WritePlan"
    actions   = ["s3:PutObject", "s3:DeleteObject"]
    resources = [local.prefix_arns["metadata"], local.prefix_arns["staged"]]
  }
  # A batch started again with chunks left withdraws its recorded outcome first (Ledger.reopen):
  # the aggregate and the validation report, as a local resume does.
  statement {
    sid       = "WithdrawOutcome"
    actions   = ["s3:DeleteObject"]
    resources = [local.prefix_arns["final-results"], local.prefix_arns["validation"]]
  }
  statement {
    sid       = "AbortInterruptedUploads"
    actions   = ["s3:AbortMultipartUpload"]
    resources = values(local.prefix_arns)
  }
}

# ProcessWithLambda and the Batch job: one chunk read from the input (or its staged copy), result
# and error parts and the chunk's manifest (or failure record) written, records delivered. The
# Batch job also plans an input too big for CalculateChunks: it stages compressed input.
data "aws_iam_policy_document" "chunk_worker" {
  statement {
    sid       = "ReadInputAndLedger"
    actions   = ["s3:GetObject"]
    resources = [local.objects_arn]
  }
  statement {
    sid       = "TellMissingFromForbidden"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]
  }
  statement {
    sid     = "WriteChunkOutputs"
    actions = ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = [
      local.prefix_arns["results"],
      local.prefix_arns["errors"],
      local.prefix_arns["metadata"],
      local.prefix_arns["staged"],
    ]
  }
  dynamic "statement" {
    for_each = local.sqs_core_enabled ? [1] : []
    content {
      sid       = "DeliverRecordsToSqsCore"
      actions   = ["sqs:SendMessage", "sqs:GetQueueAttributes"]
      resources = [local.sqs_core_queue_arn]
    }
  }
  dynamic "statement" {
    for_each = local.msk_enabled ? [1] : []
    content {
      sid = "KafkaCluster"
      # WriteDataIdempotently: the producer is idempotent (enable.idempotence).
      actions   = ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster", "kafka-cluster:WriteDataIdempotently"]
      resources = [var.msk_cluster_arn]
    }
  }
  dynamic "statement" {
    for_each = local.msk_enabled ? [1] : []
    content {
      sid       = "KafkaRecordsTopic"
      actions   = ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"]
      resources = [local.msk_records_topic_arn]
    }
  }
}

# AggregateResults: reads the batch's ledger and result/error parts, writes the validation report,
# the aggregated results and the status message's outbox copy; drops stale failure records, and
# the staged chunks of a compressed input once every chunk is done.
data "aws_iam_policy_document" "aggregate_results" {
  statement {
    sid     = "ReadBatchObjects"
    actions = ["s3:GetObject"]
    resources = [
      local.prefix_arns["metadata"],
      local.prefix_arns["results"],
      local.prefix_arns["errors"],
      local.prefix_arns["validation"],
      local.prefix_arns["final-results"],
    ]
  }
  statement {
    sid       = "ListBatchObjects"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]
  }
  statement {
    sid     = "WriteOutcome"
    actions = ["s3:PutObject", "s3:AbortMultipartUpload"]
    resources = [
      local.prefix_arns["validation"],
      local.prefix_arns["final-results"],
      local.prefix_arns["notifications"],
    ]
  }
  statement {
    sid       = "DropStaleLedgerEntries"
    actions   = ["s3:DeleteObject"]
    resources = [local.prefix_arns["metadata"], local.prefix_arns["staged"]]
  }
  # Deleting the staged chunks aborts any upload of one left open by a killed attempt too.
  statement {
    sid       = "ListStagedUploads"
    actions   = ["s3:ListBucketMultipartUploads"]
    resources = [local.bucket_arn]
  }
  statement {
    sid       = "AbortStagedUploads"
    actions   = ["s3:AbortMultipartUpload"]
    resources = [local.prefix_arns["staged"]]
  }
}

# SendToKafka: the aggregated results in, the completion notice out (and its outbox copy).
data "aws_iam_policy_document" "send_to_kafka" {
  statement {
    sid       = "ReadAggregatedResults"
    actions   = ["s3:GetObject"]
    resources = [local.prefix_arns["final-results"]]
  }
  statement {
    sid       = "WriteOutboxCopy"
    actions   = ["s3:PutObject"]
    resources = [local.prefix_arns["notifications"]]
  }
  dynamic "statement" {
    for_each = local.msk_enabled ? [1] : []
    content {
      sid       = "KafkaCluster"
      actions   = ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster", "kafka-cluster:WriteDataIdempotently"]
      resources = [var.msk_cluster_arn]
    }
  }
  dynamic "statement" {
    for_each = local.msk_enabled ? [1] : []
    content {
      sid       = "KafkaNotificationTopic"
      actions   = ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"]
      resources = [local.msk_notification_topic_arn]
    }
  }
}

# SendToSqsCore: the aggregated results in, the completion notice out (and its outbox copy).
data "aws_iam_policy_document" "send_to_sqs_core" {
  statement {
    sid       = "ReadAggregatedResults"
    actions   = ["s3:GetObject"]
    resources = [local.prefix_arns["final-results"]]
  }
  statement {
    sid       = "WriteOutboxCopy"
    actions   = ["s3:PutObject"]
    resources = [local.prefix_arns["notifications"]]
  }
  dynamic "statement" {
    for_each = local.sqs_core_enabled ? [1] : []
    content {
      sid       = "SendCompletionNotice"
      actions   = ["sqs:SendMessage", "sqs:GetQueueAttributes"]
      resources = [local.sqs_core_queue_arn]
    }
  }
}

locals {
  lambda_access_policies = {
    "read-s3"           = data.aws_iam_policy_document.read_s3.json
    "validate-data"     = data.aws_iam_policy_document.validate_data.json
    "calculate-chunks"  = data.aws_iam_policy_document.calculate_chunks.json
    "update-records"    = data.aws_iam_policy_document.chunk_worker.json
    "aggregate-results" = data.aws_iam_policy_document.aggregate_results.json
    "send-to-kafka"     = data.aws_iam_policy_document.send_to_kafka.json
    "send-to-sqs-core"  = data.aws_iam_policy_document.send_to_sqs_core.json
  }
}

resource "aws_iam_role_policy" "lambda_access" {
  for_each = local.lambda_functions

  name   = "access"
  role   = aws_iam_role.lambda[each.key].id
  policy = local.lambda_access_policies[each.key]
}

# ---- AWS Batch: the job's role (what the code does) and the execution role (pull, log) --------

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "batch_job" {
  name               = "${var.name_prefix}-batch-job"
  description        = "The chunk job's own permissions: the same as scm-batch-processor-update-records"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "batch_job_keys" {
  statement {
    sid       = "Keys"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = local.usable_kms_key_arns
  }
}

resource "aws_iam_role_policy" "batch_job_access" {
  name   = "access"
  role   = aws_iam_role.batch_job.id
  policy = data.aws_iam_policy_document.chunk_worker.json
}

resource "aws_iam_role_policy" "batch_job_keys" {
  name   = "keys"
  role   = aws_iam_role.batch_job.id
  policy = data.aws_iam_policy_document.batch_job_keys.json
}

resource "aws_iam_role" "batch_execution" {
  name               = "${var.name_prefix}-batch-execution"
  description        = "Lets Fargate pull the chunk job's image and write its logs"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "batch_execution" {
  statement {
    sid = "EcrAuthorization"
    # ecr:GetAuthorizationToken has no resource type: it can only be granted on "*".
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }
  statement {
    sid       = "PullTheJobImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
    resources = [aws_ecr_repository.batch.arn]
  }
  statement {
    sid       = "JobLogGroup"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.batch.arn}:*"]
  }
  statement {
    sid       = "ImageKey"
    actions   = ["kms:Decrypt"]
    resources = [local.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "batch_execution" {
  name   = "pull-and-log"
  role   = aws_iam_role.batch_execution.id
  policy = data.aws_iam_policy_document.batch_execution.json
}

# ---- Step Functions ---------------------------------------------------------------------------

data "aws_iam_policy_document" "sfn_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["states.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "sfn" {
  name               = "${var.name_prefix}-state-machine"
  description        = "Runs the ${local.state_machine_name} state machine"
  assume_role_policy = data.aws_iam_policy_document.sfn_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "sfn" {
  statement {
    sid     = "InvokeTheFunctions"
    actions = ["lambda:InvokeFunction"]
    resources = flatten([
      for fn in aws_lambda_function.this : [fn.arn, "${fn.arn}:*"]
    ])
  }

  statement {
    sid     = "SubmitChunkJobs"
    actions = ["batch:SubmitJob"]
    resources = [
      aws_batch_job_queue.this.arn,
      # Every revision of the job definition: an apply registers a new one.
      "${aws_batch_job_definition.process_chunk.arn_prefix}:*",
    ]
  }

  statement {
    sid = "FollowChunkJobs"
    # submitJob.sync follows the job with DescribeJobs, which has no resource type: "*" only.
    actions   = ["batch:DescribeJobs"]
    resources = ["*"]
  }

  statement {
    sid = "StopChunkJobs"
    # submitJob.sync terminates the job when the state stops (execution aborted or timed out).
    # Job ids exist only at run time, so: any job of this account and region, not "*".
    actions   = ["batch:TerminateJob"]
    resources = ["arn:${local.partition}:batch:${local.region}:${local.account_id}:job/*"]
  }

  statement {
    sid = "BatchJobCompletionEvents"
    # The managed rule through which submitJob.sync learns that a job finished.
    actions   = ["events:PutTargets", "events:PutRule", "events:DescribeRule"]
    resources = ["arn:${local.partition}:events:${local.region}:${local.account_id}:rule/StepFunctionsGetEventsForBatchJobsRule"]
  }

  statement {
    sid       = "StatusNotifications"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.status.arn]
  }

  statement {
    sid = "ChunkItemsAndFailureRecords"
    # The Distributed Map reads its items from metadata/<batchId>/chunk-items.json; a chunk that
    # fails after its retries is recorded under metadata/<batchId>/failures/.
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = [local.prefix_arns["metadata"]]
  }

  statement {
    sid = "DistributedMapChildWorkflows"
    # ARNs built from the name: the state machine's own arn attribute would be a cycle.
    actions   = ["states:StartExecution"]
    resources = [local.state_machine_arn]
  }

  statement {
    sid       = "DistributedMapChildExecutions"
    actions   = ["states:DescribeExecution", "states:StopExecution"]
    resources = [local.state_machine_executions_arn]
  }

  statement {
    sid = "ExecutionLogDelivery"
    # CloudWatch Logs delivery for Step Functions: these actions take no resource and are
    # documented on "*" (https://docs.aws.amazon.com/step-functions/latest/dg/cw-logs.html).
    actions = [
      "logs:CreateLogDelivery",
      "logs:GetLogDelivery",
      "logs:UpdateLogDelivery",
      "logs:DeleteLogDelivery",
      "logs:ListLogDeliveries",
      "logs:PutResourcePolicy",
      "logs:DescribeResourcePolicies",
      "logs:DescribeLogGroups",
    ]
    resources = ["*"]
  }

  statement {
    sid       = "Keys"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = local.usable_kms_key_arns
  }
}

resource "aws_iam_role_policy" "sfn" {
  name   = "orchestrate"
  role   = aws_iam_role.sfn.id
  policy = data.aws_iam_policy_document.sfn.json
}

resource "aws_iam_role_policy_attachment" "sfn_xray" {
  role       = aws_iam_role.sfn.name
  policy_arn = local.xray_policy_arn
}

# ---- The manifest trigger: EventBridge starts executions, nothing else ----------------------

data "aws_iam_policy_document" "events_assume" {
  count = var.enable_manifest_trigger ? 1 : 0

  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "events" {
  count = var.enable_manifest_trigger ? 1 : 0

  name               = "${var.name_prefix}-manifest-trigger"
  description        = "Lets EventBridge start ${local.state_machine_name} for a new manifest"
  assume_role_policy = data.aws_iam_policy_document.events_assume[0].json
  tags               = local.tags
}

data "aws_iam_policy_document" "events" {
  count = var.enable_manifest_trigger ? 1 : 0

  statement {
    sid       = "StartExecutions"
    actions   = ["states:StartExecution"]
    resources = [aws_sfn_state_machine.this.arn]
  }
}

resource "aws_iam_role_policy" "events" {
  count = var.enable_manifest_trigger ? 1 : 0

  name   = "start-execution"
  role   = aws_iam_role.events[0].id
  policy = data.aws_iam_policy_document.events[0].json
}

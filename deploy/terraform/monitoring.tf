# Alarms go to one encrypted SNS topic. They are event alarms: "something failed in the last five
# minutes" (Sum >= 1), which suits a workflow that runs for hours; nothing alarms on duration.

resource "aws_sns_topic" "alarms" {
  name              = "${var.name_prefix}-alarms"
  kms_master_key_id = local.kms_key_arn
  tags              = local.tags
}

data "aws_iam_policy_document" "alarms_topic" {
  statement {
    sid       = "CloudWatchAlarmsOfThisAccount"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  statement {
    sid       = "DenyWithoutTls"
    effect    = "Deny"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sns_topic_policy" "alarms" {
  arn    = aws_sns_topic.alarms.arn
  policy = data.aws_iam_policy_document.alarms_topic.json
}

resource "aws_sns_topic_subscription" "alarm_email" {
  count = var.alarm_email == null ? 0 : 1

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

locals {
  alarm_actions = [aws_sns_topic.alarms.arn]

  # Every alarm name is "<name_prefix>-<kind>-<key>": the kinds differ and the keys of one
  # resource's for_each are distinct, so no two alarms share a name.
  sfn_alarms = {
    "executions-failed"    = { metric = "ExecutionsFailed", what = "An execution failed" }
    "executions-timed-out" = { metric = "ExecutionsTimedOut", what = "An execution timed out" }
    "executions-aborted"   = { metric = "ExecutionsAborted", what = "An execution was aborted" }
  }
}

resource "aws_cloudwatch_metric_alarm" "sfn" {
  for_each = local.sfn_alarms

  alarm_name        = "${var.name_prefix}-sfn-${each.key}"
  alarm_description = "${each.value.what}: ${local.state_machine_name}. See the execution in the Step Functions console."

  namespace   = "AWS/States"
  metric_name = each.value.metric
  dimensions = {
    StateMachineArn = aws_sfn_state_machine.this.arn
  }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions
  tags          = local.tags
}

# One alarm per function and metric, named after the function's step (read-s3, ...).
resource "aws_cloudwatch_metric_alarm" "lambda_errors" {
  for_each = local.lambda_functions

  alarm_name        = "${var.name_prefix}-lambda-errors-${each.key}"
  alarm_description = "${each.value.function_name} raised errors (Step Functions retries the transient ones; see its log group)."

  namespace   = "AWS/Lambda"
  metric_name = "Errors"
  dimensions = {
    FunctionName = aws_lambda_function.this[each.key].function_name
  }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions
  tags          = local.tags
}

resource "aws_cloudwatch_metric_alarm" "lambda_throttles" {
  for_each = local.lambda_functions

  alarm_name        = "${var.name_prefix}-lambda-throttles-${each.key}"
  alarm_description = "${each.value.function_name} was throttled: its reserved concurrency, or the account's, is used up (Step Functions waits and retries)."

  namespace   = "AWS/Lambda"
  metric_name = "Throttles"
  dimensions = {
    FunctionName = aws_lambda_function.this[each.key].function_name
  }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions
  tags          = local.tags
}

resource "aws_cloudwatch_metric_alarm" "status_dlq" {
  alarm_name        = "${var.name_prefix}-status-dlq-not-empty"
  alarm_description = "Status notifications in ${aws_sqs_queue.status_dlq.name}: a consumer of batch-proc failed on them five times."

  namespace   = "AWS/SQS"
  metric_name = "ApproximateNumberOfMessagesVisible"
  dimensions = {
    QueueName = aws_sqs_queue.status_dlq.name
  }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions
  tags          = local.tags
}

resource "aws_cloudwatch_metric_alarm" "manifest_dlq" {
  count = var.enable_manifest_trigger ? 1 : 0

  alarm_name        = "${var.name_prefix}-manifest-trigger-dlq-not-empty"
  alarm_description = "Manifest events EventBridge could not turn into executions are in ${aws_sqs_queue.manifest_dlq[0].name}."

  namespace   = "AWS/SQS"
  metric_name = "ApproximateNumberOfMessagesVisible"
  dimensions = {
    QueueName = aws_sqs_queue.manifest_dlq[0].name
  }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions
  tags          = local.tags
}

# Emitted by AggregateResults (Embedded Metric Format): chunks that failed after their retries,
# or never ran. A batch can still complete with them (tolerated_failure_*), hence its own alarm.
resource "aws_cloudwatch_metric_alarm" "chunks_failed" {
  alarm_name        = "${var.name_prefix}-chunks-failed"
  alarm_description = "A batch finished with failed chunks (listed in final-results/<batchId>/aggregated-results.json)."

  namespace   = local.metrics_namespace
  metric_name = "ChunksFailed"
  dimensions = {
    Stage = "AggregateResults"
  }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions
  tags          = local.tags
}

# ---- Dashboard ----------------------------------------------------------------------------------

locals {
  dashboard_name = "${var.name_prefix}-batch-processing"

  function_names = [for key in sort(keys(local.lambda_functions)) : local.lambda_functions[key].function_name]

  dashboard_widgets = [
    {
      type = "metric", x = 0, y = 0, width = 12, height = 6
      properties = {
        title  = "Executions"
        region = local.region
        stat   = "Sum"
        period = 300
        view   = "timeSeries"
        metrics = [
          for metric in ["ExecutionsStarted", "ExecutionsSucceeded", "ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"] :
          ["AWS/States", metric, "StateMachineArn", aws_sfn_state_machine.this.arn]
        ]
      }
    },
    {
      type = "metric", x = 12, y = 0, width = 12, height = 6
      properties = {
        title   = "Status dead-letter queue depth"
        region  = local.region
        stat    = "Maximum"
        period  = 300
        view    = "timeSeries"
        metrics = [["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", aws_sqs_queue.status_dlq.name]]
      }
    },
    {
      type = "metric", x = 0, y = 6, width = 8, height = 6
      properties = {
        title   = "Lambda errors"
        region  = local.region
        stat    = "Sum"
        period  = 300
        view    = "timeSeries"
        metrics = [for name in local.function_names : ["AWS/Lambda", "Errors", "FunctionName", name]]
      }
    },
    {
      type = "metric", x = 8, y = 6, width = 8, height = 6
      properties = {
        title   = "Lambda duration (max)"
        region  = local.region
        stat    = "Maximum"
        period  = 300
        view    = "timeSeries"
        metrics = [for name in local.function_names : ["AWS/Lambda", "Duration", "FunctionName", name]]
      }
    },
    {
      type = "metric", x = 16, y = 6, width = 8, height = 6
      properties = {
        title   = "Lambda throttles"
        region  = local.region
        stat    = "Sum"
        period  = 300
        view    = "timeSeries"
        metrics = [for name in local.function_names : ["AWS/Lambda", "Throttles", "FunctionName", name]]
      }
    },
    {
      type = "metric", x = 0, y = 12, width = 12, height = 6
      properties = {
        title  = "Records per chunk stage (Lambda and Batch)"
        region = local.region
        stat   = "Sum"
        period = 300
        view   = "timeSeries"
        metrics = [
          [local.metrics_namespace, "RecordsProcessed", "Stage", "ProcessWithLambda"],
          [local.metrics_namespace, "RecordsInvalid", "Stage", "ProcessWithLambda"],
          [local.metrics_namespace, "RecordsProcessed", "Stage", "SubmitBatchJob"],
          [local.metrics_namespace, "RecordsInvalid", "Stage", "SubmitBatchJob"],
        ]
      }
    },
    {
      type = "metric", x = 12, y = 12, width = 12, height = 6
      properties = {
        title  = "Chunks processed, and chunk duration (max, right axis)"
        region = local.region
        period = 300
        view   = "timeSeries"
        metrics = [
          [local.metrics_namespace, "ChunksProcessed", "Stage", "ProcessWithLambda", { stat = "Sum" }],
          [local.metrics_namespace, "ChunksProcessed", "Stage", "SubmitBatchJob", { stat = "Sum" }],
          [local.metrics_namespace, "ChunkDuration", "Stage", "ProcessWithLambda", { stat = "Maximum", yAxis = "right" }],
          [local.metrics_namespace, "ChunkDuration", "Stage", "SubmitBatchJob", { stat = "Maximum", yAxis = "right" }],
        ]
      }
    },
    {
      type = "metric", x = 0, y = 18, width = 24, height = 6
      properties = {
        title  = "Batches: records and failed chunks"
        region = local.region
        stat   = "Sum"
        period = 300
        view   = "timeSeries"
        metrics = [
          [local.metrics_namespace, "BatchRecords", "Stage", "AggregateResults"],
          [local.metrics_namespace, "ChunksFailed", "Stage", "AggregateResults", { yAxis = "right" }],
        ]
      }
    },
  ]
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = local.dashboard_name
  dashboard_body = jsonencode({ widgets = local.dashboard_widgets })
}

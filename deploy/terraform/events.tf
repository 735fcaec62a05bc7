# The manifest trigger (enable_manifest_trigger): an object created under manifest_prefix in the
# bucket starts an execution whose input is the EventBridge event itself; the first state reads
# the manifest it names (detail.bucket.name, detail.object.key).
#
# The bucket must send its events to EventBridge. That is a setting of the bucket's notification
# configuration, which exists once per bucket: this module leaves it alone unless
# manage_bucket_eventbridge_notification is set (which replaces the whole configuration).

resource "aws_s3_bucket_notification" "eventbridge" {
  count = var.enable_manifest_trigger && var.manage_bucket_eventbridge_notification ? 1 : 0

  bucket      = var.s3_bucket_name
  eventbridge = true
}

resource "aws_cloudwatch_event_rule" "manifest_created" {
  count = var.enable_manifest_trigger ? 1 : 0

  name        = "${var.name_prefix}-manifest-created"
  description = "A manifest object under s3://${var.s3_bucket_name}/${var.manifest_prefix} starts ${local.state_machine_name}"

  event_pattern = jsonencode({
    source        = ["aws.s3"]
    "detail-type" = ["Object Created"]
    detail = {
      bucket = { name = [var.s3_bucket_name] }
      object = { key = [{ prefix = var.manifest_prefix }] }
    }
  })

  tags = local.tags
}

resource "aws_cloudwatch_event_target" "manifest_created" {
  count = var.enable_manifest_trigger ? 1 : 0

  rule     = aws_cloudwatch_event_rule.manifest_created[0].name
  arn      = aws_sfn_state_machine.this.arn
  role_arn = aws_iam_role.events[0].arn

  # StartExecution throttled or failing: retried for a day, then kept in the dead-letter queue
  # (which raises an alarm) rather than lost.
  retry_policy {
    maximum_event_age_in_seconds = 86400
    maximum_retry_attempts       = 185
  }

  dead_letter_config {
    arn = aws_sqs_queue.manifest_dlq[0].arn
  }
}

resource "aws_sqs_queue" "manifest_dlq" {
  count = var.enable_manifest_trigger ? 1 : 0

  name                              = "${var.name_prefix}-manifest-trigger-dlq"
  kms_master_key_id                 = local.kms_key_arn
  kms_data_key_reuse_period_seconds = 300
  message_retention_seconds         = 1209600 # 14 days
  tags                              = local.tags
}

data "aws_iam_policy_document" "manifest_dlq" {
  count = var.enable_manifest_trigger ? 1 : 0

  statement {
    sid       = "EventBridgeDeadLetters"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.manifest_dlq[0].arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.manifest_created[0].arn]
    }
  }

  statement {
    sid       = "DenyWithoutTls"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [aws_sqs_queue.manifest_dlq[0].arn]
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

resource "aws_sqs_queue_policy" "manifest_dlq" {
  count = var.enable_manifest_trigger ? 1 : 0

  queue_url = aws_sqs_queue.manifest_dlq[0].id
  policy    = data.aws_iam_policy_document.manifest_dlq[0].json
}

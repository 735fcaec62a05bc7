# The status queue of the contract, `batch-proc`: the state machine's SendToSQS / ReportFailure
# states send each batch's status notification here. Consumers that fail on a message five times
# leave it in `batch-proc-dlq`, which raises an alarm.

resource "aws_sqs_queue" "status_dlq" {
  name                              = "batch-proc-dlq"
  kms_master_key_id                 = local.kms_key_arn
  kms_data_key_reuse_period_seconds = 300
  message_retention_seconds         = 1209600 # 14 days, the most SQS keeps
  tags                              = local.tags
}

resource "aws_sqs_queue" "status" {
  name                              = "batch-proc"
  kms_master_key_id                 = local.kms_key_arn
  kms_data_key_reuse_period_seconds = 300
  message_retention_seconds         = 345600 # 4 days
  visibility_timeout_seconds        = 60
  receive_wait_time_seconds         = 20 # long polling

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.status_dlq.arn
    maxReceiveCount     = 5
  })

  tags = local.tags
}

# Only batch-proc may move messages into its dead-letter queue.
resource "aws_sqs_queue_redrive_allow_policy" "status_dlq" {
  queue_url = aws_sqs_queue.status_dlq.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.status.arn]
  })
}

data "aws_iam_policy_document" "status_queue" {
  for_each = {
    status     = aws_sqs_queue.status.arn
    status_dlq = aws_sqs_queue.status_dlq.arn
  }

  statement {
    sid       = "DenyWithoutTls"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [each.value]
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

resource "aws_sqs_queue_policy" "status" {
  queue_url = aws_sqs_queue.status.id
  policy    = data.aws_iam_policy_document.status_queue["status"].json
}

resource "aws_sqs_queue_policy" "status_dlq" {
  queue_url = aws_sqs_queue.status_dlq.id
  policy    = data.aws_iam_policy_document.status_queue["status_dlq"].json
}

# The workflow. Its definition is generated from the Python code that knows the states:
#   scm-batch aws definition --terraform -o deploy/terraform/state-machine.asl.json.tftpl
# and filled in here with the ARNs and numbers of this deployment.

resource "aws_sfn_state_machine" "this" {
  name       = local.state_machine_name
  type       = "STANDARD" # a batch runs for hours; EXPRESS stops at 5 minutes
  role_arn   = aws_iam_role.sfn.arn
  definition = templatefile("${path.module}/state-machine.asl.json.tftpl", local.definition_vars)

  logging_configuration {
    log_destination = "${aws_cloudwatch_log_group.sfn.arn}:*"
    # Every event (state entered/exited, task failures with their error and cause) is logged
    # with its input and output: the states carry ids, object keys and counts, never records
    # (chunk items are byte ranges; results are counts), and a failed execution can then be
    # diagnosed from the log group alone. The log group is encrypted with the module's key.
    level                  = "ALL"
    include_execution_data = true
  }

  tracing_configuration {
    enabled = true
  }

  tags = local.tags

  # The role must be allowed to deliver logs (and to invoke what the definition names) when the
  # state machine is created.
  depends_on = [aws_iam_role_policy.sfn, aws_iam_role_policy_attachment.sfn_xray]
}

locals {
  # The template's variables: exactly scm_batch.aws.definition.template_variables() (the
  # generator writes ${name} placeholders; templatefile fails on a missing one).
  definition_vars = {
    lambda_read_s3_arn           = aws_lambda_function.this["read-s3"].arn
    lambda_validate_data_arn     = aws_lambda_function.this["validate-data"].arn
    lambda_calculate_chunks_arn  = aws_lambda_function.this["calculate-chunks"].arn
    lambda_update_records_arn    = aws_lambda_function.this["update-records"].arn
    lambda_aggregate_results_arn = aws_lambda_function.this["aggregate-results"].arn
    lambda_send_to_kafka_arn     = aws_lambda_function.this["send-to-kafka"].arn
    lambda_send_to_sqs_core_arn  = aws_lambda_function.this["send-to-sqs-core"].arn
    batch_job_queue_arn          = aws_batch_job_queue.this.arn
    batch_job_definition_arn     = aws_batch_job_definition.process_chunk.arn
    status_queue_url             = aws_sqs_queue.status.url
    kms_key_arn                  = local.kms_key_arn # the state machine's own S3 writes
    max_concurrent_chunks        = var.max_concurrent_chunks
    lambda_timeout               = var.lambda_timeout
    batch_job_timeout            = var.batch_job_timeout
    batch_job_attempts           = var.batch_job_attempts # SubmitBatchJob waits for every attempt
  }
}

resource "aws_cloudwatch_log_group" "sfn" {
  # /aws/vendedlogs/: Step Functions' log delivery then needs no per-group resource policy.
  name              = "/aws/vendedlogs/states/${local.state_machine_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
  tags              = local.tags
}

output "state_machine_arn" {
  description = "ARN of the state machine: start executions with it."
  value       = aws_sfn_state_machine.this.arn
}

output "state_machine_name" {
  description = "Name of the state machine."
  value       = aws_sfn_state_machine.this.name
}

output "status_queue_url" {
  description = "URL of the batch-proc status queue (SendToSQS / ReportFailure messages)."
  value       = aws_sqs_queue.status.url
}

output "status_dlq_url" {
  description = "URL of batch-proc-dlq, the status queue's dead-letter queue."
  value       = aws_sqs_queue.status_dlq.url
}

output "lambda_function_names" {
  description = "Function names by step (read-s3, validate-data, ...)."
  value       = { for key, fn in aws_lambda_function.this : key => fn.function_name }
}

output "lambda_function_arns" {
  description = "Function ARNs by step."
  value       = { for key, fn in aws_lambda_function.this : key => fn.arn }
}

output "batch_job_queue_arn" {
  description = "ARN of the AWS Batch job queue of the chunk jobs."
  value       = aws_batch_job_queue.this.arn
}

output "batch_job_definition_arn" {
  description = "ARN (with revision) of the chunk job definition."
  value       = aws_batch_job_definition.process_chunk.arn
}

output "ecr_repository_url" {
  description = "Repository to push the Batch image to, as <url>:<batch_image_tag>."
  value       = aws_ecr_repository.batch.repository_url
}

output "dashboard_name" {
  description = "Name of the CloudWatch dashboard."
  value       = aws_cloudwatch_dashboard.this.dashboard_name
}

output "alarm_topic_arn" {
  description = "ARN of the SNS topic the alarms notify (subscribe more endpoints to it)."
  value       = aws_sns_topic.alarms.arn
}

output "kms_key_arn" {
  description = "ARN of the KMS key in use (created, or kms_key_arn)."
  value       = local.kms_key_arn
}

output "log_group_names" {
  description = "Log groups: one per function (by step), the Batch job's and the state machine's."
  value = merge(
    { for key, group in aws_cloudwatch_log_group.lambda : key => group.name },
    {
      batch-job     = aws_cloudwatch_log_group.batch.name
      state-machine = aws_cloudwatch_log_group.sfn.name
    },
  )
}

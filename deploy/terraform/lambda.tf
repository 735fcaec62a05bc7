# The seven functions, with the contract's names, all from the one package that
# `make lambda-package` builds. update-records processes a whole chunk and gets lambda_memory /
# lambda_timeout; the others handle small values (ids, keys, counts) and stay small.

locals {
  lambda_package_path = coalesce(var.lambda_package_path, "${path.module}/../../dist/scm-batch-lambda.zip")

  lambda_functions = {
    "read-s3" = {
      function_name        = "scm-batch-processor-read-s3"
      handler              = "scm_batch.aws.handlers.read_s3"
      description          = "InitializeBatchProcessing: check the input (or manifest), find and sample the input object"
      memory_size          = 1024
      timeout              = 300
      reserved_concurrency = var.lambda_reserved_concurrency
    }
    "validate-data" = {
      function_name        = "scm-batch-processor-validate-data"
      handler              = "scm_batch.aws.handlers.validate_data"
      description          = "ValidateBatchConfig: no conflicting plan; brokers and queues answer"
      memory_size          = 1024
      timeout              = 300
      reserved_concurrency = var.lambda_reserved_concurrency
    }
    "calculate-chunks" = {
      function_name        = "scm-batch-processor-calculate-chunks"
      handler              = "scm_batch.aws.handlers.calculate_chunks"
      description          = "CalculateChunks: cut the input into chunks on record boundaries, store the plan"
      memory_size          = 1024
      timeout              = 300
      reserved_concurrency = var.lambda_reserved_concurrency
    }
    "update-records" = {
      function_name        = "scm-batch-processor-update-records"
      handler              = "scm_batch.aws.handlers.update_records"
      description          = "ProcessWithLambda: validate, transform and deliver the records of one chunk"
      memory_size          = var.lambda_memory
      timeout              = var.lambda_timeout
      reserved_concurrency = var.update_records_reserved_concurrency
    }
    "aggregate-results" = {
      function_name        = "scm-batch-processor-aggregate-results"
      handler              = "scm_batch.aws.handlers.aggregate_results"
      description          = "AggregateResults: fold the chunk results into the summary and validation report"
      memory_size          = 3008
      timeout              = 900
      reserved_concurrency = var.lambda_reserved_concurrency
    }
    "send-to-kafka" = {
      function_name        = "scm-batch-processor-send-to-kafka"
      handler              = "scm_batch.aws.handlers.send_to_kafka"
      description          = "SendToKafka: the batch completion notification to Kafka"
      memory_size          = 1024
      timeout              = 300
      reserved_concurrency = var.lambda_reserved_concurrency
    }
    "send-to-sqs-core" = {
      function_name        = "scm-batch-processor-send-to-sqs-core"
      handler              = "scm_batch.aws.handlers.send_to_sqs_core"
      description          = "SendToSqsCore: the batch completion notification to SQS Core"
      memory_size          = 1024
      timeout              = 300
      reserved_concurrency = var.lambda_reserved_concurrency
    }
  }

  lambda_in_vpc = length(var.lambda_subnet_ids) > 0
}

resource "aws_cloudwatch_log_group" "lambda" {
  for_each = local.lambda_functions

  name              = "/aws/lambda/${each.value.function_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
  tags              = local.tags
}

resource "aws_lambda_function" "this" {
  for_each = local.lambda_functions

  #checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile and a signing step in the release pipeline; the package is built reproducibly by make lambda-package and its hash pins what Terraform deploys.
  #checkov:skip=CKV_AWS_116:The functions are invoked synchronously by Step Functions, which retries and catches their errors; a Lambda DLQ only applies to asynchronous invocations.
  #checkov:skip=CKV_AWS_117:Running in a VPC is optional (lambda_subnet_ids): needed only to reach brokers inside a VPC; S3 and SQS are reached over TLS with IAM.

  function_name = each.value.function_name
  description   = each.value.description
  role          = aws_iam_role.lambda[each.key].arn
  handler       = each.value.handler
  runtime       = "python3.12"
  architectures = ["x86_64"]
  memory_size   = each.value.memory_size
  timeout       = each.value.timeout

  filename         = local.lambda_package_path
  source_code_hash = filebase64sha256(local.lambda_package_path)

  reserved_concurrent_executions = each.value.reserved_concurrency
  kms_key_arn                    = local.kms_key_arn

  environment {
    variables = local.runtime_environment
  }

  tracing_config {
    mode = "Active"
  }

  logging_config {
    # The code writes one JSON document per line (log lines and EMF metrics) itself.
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.lambda[each.key].name
  }

  dynamic "vpc_config" {
    for_each = local.lambda_in_vpc ? [1] : []
    content {
      subnet_ids         = var.lambda_subnet_ids
      security_group_ids = var.lambda_security_group_ids
    }
  }

  tags = local.tags

  depends_on = [
    aws_iam_role_policy.lambda_base,
    aws_iam_role_policy.lambda_access,
    aws_iam_role_policy_attachment.lambda_xray,
    aws_iam_role_policy_attachment.lambda_vpc,
    terraform_data.configuration_checks,
  ]
}

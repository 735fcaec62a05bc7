# The state machine's definition as the module renders it (templatefile() on
# state-machine.asl.json.tftpl with local.definition_vars) is exactly what
#   scm-batch aws definition --account 210987654321 --region eu-west-1 \
#     --job-queue scm-batch-chunks --job-definition scm-batch-process-chunk:1 \
#     --max-concurrent-chunks 120 --lambda-timeout 600 --batch-job-timeout 7200 \
#     --batch-job-attempts 2 \
#     --sse-kms-key arn:aws:kms:eu-west-1:210987654321:key/0a1b2c3d-4e5f-4a6b-8c9d-0e1f2a3b4c5d
# prints. Offline: the AWS provider is mocked, and the resources whose ARNs (and URL) the
# definition names get the ones that command builds (the KMS key: the one the module creates,
# kms_key_arn being null).
#
# tests/deploy/test_terraform_cli.py runs it, giving two variables in a -var-file:
#   expected_definition  the command's output (a JSON string), generated at run time
#   lambda_package_path  any file (the plan hashes it; nothing is uploaded)
# The values below and that test's options must agree.
#
# Needs Terraform 1.11 or later (override_during = plan: the overridden ARNs are known at plan).

mock_provider "aws" {
  override_during = plan

  mock_data "aws_caller_identity" {
    defaults = { account_id = "210987654321" }
  }
  mock_data "aws_region" {
    defaults = { name = "eu-west-1" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws", dns_suffix = "amazonaws.com" }
  }
  # The plan checks that roles' policies are JSON objects; the mock's random strings are not.
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{}" }
  }
}

# What the definition refers to, one instance at a time, so that two functions swapped in
# local.definition_vars would show.
override_resource {
  target          = aws_lambda_function.this["read-s3"]
  override_during = plan
  values          = { arn = "arn:aws:lambda:eu-west-1:210987654321:function:scm-batch-processor-read-s3" }
}
override_resource {
  target          = aws_lambda_function.this["validate-data"]
  override_during = plan
  values          = { arn = "arn:aws:lambda:eu-west-1:210987654321:function:scm-batch-processor-validate-data" }
}
override_resource {
  target          = aws_lambda_function.this["calculate-chunks"]
  override_during = plan
  values          = { arn = "arn:aws:lambda:eu-west-1:210987654321:function:scm-batch-processor-calculate-chunks" }
}
override_resource {
  target          = aws_lambda_function.this["update-records"]
  override_during = plan
  values          = { arn = "arn:aws:lambda:eu-west-1:210987654321:function:scm-batch-processor-update-records" }
}
override_resource {
  target          = aws_lambda_function.this["aggregate-results"]
  override_during = plan
  values          = { arn = "arn:aws:lambda:eu-west-1:210987654321:function:scm-batch-processor-aggregate-results" }
}
override_resource {
  target          = aws_lambda_function.this["send-to-kafka"]
  override_during = plan
  values          = { arn = "arn:aws:lambda:eu-west-1:210987654321:function:scm-batch-processor-send-to-kafka" }
}
override_resource {
  target          = aws_lambda_function.this["send-to-sqs-core"]
  override_during = plan
  values          = { arn = "arn:aws:lambda:eu-west-1:210987654321:function:scm-batch-processor-send-to-sqs-core" }
}
override_resource {
  target          = aws_batch_job_queue.this
  override_during = plan
  values          = { arn = "arn:aws:batch:eu-west-1:210987654321:job-queue/scm-batch-chunks" }
}
override_resource {
  target          = aws_batch_job_definition.process_chunk
  override_during = plan
  values          = { arn = "arn:aws:batch:eu-west-1:210987654321:job-definition/scm-batch-process-chunk:1" }
}
override_resource {
  target          = aws_kms_key.this[0]
  override_during = plan
  values          = { arn = "arn:aws:kms:eu-west-1:210987654321:key/0a1b2c3d-4e5f-4a6b-8c9d-0e1f2a3b4c5d" }
}
override_resource {
  target          = aws_sqs_queue.status
  override_during = plan
  values          = { url = "https://sqs.eu-west-1.amazonaws.com/210987654321/batch-proc" }
}

variables {
  s3_bucket_name           = "scm-batch-test-bucket"
  batch_subnet_ids         = ["subnet-0123456789abcdef0"]
  batch_security_group_ids = ["sg-0123456789abcdef0"]
  batch_image_tag          = "0.1.0"
  kafka_brokers            = "b-1.kafka.example.com:9098"

  # Not the defaults, so that a number taken from the wrong place shows.
  max_concurrent_chunks = 120
  lambda_timeout        = 600
  batch_job_timeout     = 7200
  batch_job_attempts    = 2
}

run "definition_is_the_generated_one" {
  command = plan

  assert {
    condition = jsondecode(aws_sfn_state_machine.this.definition) == jsondecode(var.expected_definition)
    error_message = format(
      "The rendered definition is not what scm-batch aws definition prints for these values; states that differ: %s.",
      join(", ", [
        for name in sort(setunion(
          keys(jsondecode(aws_sfn_state_machine.this.definition).States),
          keys(jsondecode(var.expected_definition).States),
        )) : name
        if try(jsondecode(aws_sfn_state_machine.this.definition).States[name], null) != try(jsondecode(var.expected_definition).States[name], null)
      ]),
    )
  }

  assert {
    condition     = jsondecode(aws_sfn_state_machine.this.definition).States.ProcessChunksInParallel.MaxConcurrency == var.max_concurrent_chunks
    error_message = "The Map's MaxConcurrency is not var.max_concurrent_chunks."
  }
}

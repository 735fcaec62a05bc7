# scm-batch on AWS: a Step Functions state machine that plans a batch into chunks, runs each chunk
# on Lambda (update-records) or on AWS Batch (Fargate), aggregates, and sends the completion
# notice to Kafka or SQS Core. See the README's "Deploying to AWS".
#
# Every ARN is built from these data sources: no account id, region or partition is written out.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition
  dns_suffix = data.aws_partition.current.dns_suffix

  tags = merge({ "app" = "scm-batch" }, var.tags)

  # The namespace of the metrics the code emits (CloudWatch Embedded Metric Format).
  metrics_namespace = "ScmBatch"

  # ---- The working bucket (existing; not managed here) ----
  bucket_arn  = "arn:${local.partition}:s3:::${var.s3_bucket_name}"
  objects_arn = "${local.bucket_arn}/*" # input files and manifests may be anywhere in the bucket
  # The prefixes one batch writes under (scm_batch.layout.BATCH_PREFIXES).
  prefix_arns = {
    for prefix in ["metadata", "staged", "results", "errors", "validation", "final-results", "notifications"] :
    prefix => "${local.bucket_arn}/${prefix}/*"
  }

  # ---- Encryption ----
  create_kms_key = var.kms_key_arn == null
  kms_key_arn    = local.create_kms_key ? aws_kms_key.this[0].arn : var.kms_key_arn
  # Keys every role may decrypt and encrypt with: the module's and the external ones.
  usable_kms_key_arns = concat([local.kms_key_arn], var.external_kms_key_arns)

  # ---- SQS Core (an existing queue, maybe in another account): its ARN from its URL ----
  sqs_core_enabled = var.sqs_core_queue_url != ""
  # https://sqs.REGION.amazonaws.com/ACCOUNT/NAME → [REGION, ACCOUNT, NAME]
  sqs_core_queue_parts = local.sqs_core_enabled ? regex(
    "^https://sqs[.]([a-z0-9-]+)[.]amazonaws[.]com(?:[.]cn)?/([0-9]{12})/([A-Za-z0-9_.-]+)$",
    var.sqs_core_queue_url,
  ) : []
  sqs_core_queue_arn = local.sqs_core_enabled ? join(":", [
    "arn", local.partition, "sqs",
    local.sqs_core_queue_parts[0], local.sqs_core_queue_parts[1], local.sqs_core_queue_parts[2],
  ]) : ""

  # ---- MSK with IAM auth: the cluster, and the two topics the code writes to ----
  msk_enabled = var.msk_cluster_arn != null
  # arn:...:cluster/NAME/UUID → arn:...:topic/NAME/UUID/TOPIC
  msk_topic_prefix           = local.msk_enabled ? replace(var.msk_cluster_arn, ":cluster/", ":topic/") : ""
  msk_records_topic_arn      = "${local.msk_topic_prefix}/${var.kafka_topic}"
  msk_notification_topic_arn = "${local.msk_topic_prefix}/${var.kafka_notification_topic}"
  kafka_security_environment = local.msk_enabled ? {
    KAFKA_SECURITY_PROTOCOL = "SASL_SSL"
    KAFKA_SASL_MECHANISM    = "OAUTHBEARER"
    KAFKA_MSK_IAM_REGION    = local.region
  } : {}

  # ---- The environment of every function and of the Batch job (scm_batch.settings) ----
  # Empty values are left out: the code reads a missing variable as "not configured".
  runtime_environment = {
    for name, value in merge(
      {
        SCM_BATCH_MAX_CONCURRENT_CHUNKS                = tostring(var.max_concurrent_chunks)
        SCM_BATCH_MAX_RECORDS_PER_CHUNK                = tostring(var.max_records_per_chunk)
        SCM_BATCH_DESTINATION                          = var.record_destination
        SCM_BATCH_LAMBDA_TIMEOUT                       = tostring(var.lambda_timeout)
        SCM_BATCH_ESTIMATED_PROCESSING_TIME_PER_RECORD = tostring(var.estimated_processing_time_per_record)
        SCM_BATCH_BATCH_PROCESSING_THRESHOLD           = tostring(var.batch_processing_threshold)
        SCM_BATCH_TOLERATED_FAILURE_PERCENTAGE         = tostring(var.tolerated_failure_percentage)
        SCM_BATCH_TOLERATED_FAILURE_COUNT              = tostring(var.tolerated_failure_count)
        SCM_BATCH_METRICS_NAMESPACE                    = local.metrics_namespace
        SCM_BATCH_SSE                                  = "aws:kms"
        SCM_BATCH_SSE_KMS_KEY_ID                       = local.kms_key_arn
        KAFKA_BROKERS                                  = var.kafka_brokers
        KAFKA_TOPIC                                    = var.kafka_topic
        KAFKA_NOTIFICATION_TOPIC                       = var.kafka_notification_topic
        SQS_CORE_QUEUE                                 = var.sqs_core_queue_url
        SCM_BATCH_COMPLETION_OUTBOX_ONLY               = var.completion_outbox_only ? "true" : ""
      },
      local.kafka_security_environment,
    ) : name => value if value != ""
  }

  # ---- Names fixed here so that ARNs can be built without a dependency cycle ----
  state_machine_name = "${var.name_prefix}-batch-processing"
  state_machine_arn  = "arn:${local.partition}:states:${local.region}:${local.account_id}:stateMachine:${local.state_machine_name}"
  # Executions of the state machine, the Distributed Map's child workflows among them.
  state_machine_executions_arn = "arn:${local.partition}:states:${local.region}:${local.account_id}:execution:${local.state_machine_name}/*"
  # Its own executions (not the child workflows): whose lease on a batch still stands.
  state_machine_runs_arn = "arn:${local.partition}:states:${local.region}:${local.account_id}:execution:${local.state_machine_name}:*"
}

# A deployment that cannot work fails at plan time with a message, not at 3 a.m. in a chunk.
resource "terraform_data" "configuration_checks" {
  input = var.record_destination

  lifecycle {
    precondition {
      condition     = var.record_destination != "kafka" || var.kafka_brokers != ""
      error_message = "record_destination is kafka but kafka_brokers is empty: set kafka_brokers, or record_destination = \"sqs_core\" / \"none\"."
    }
    precondition {
      condition     = var.record_destination != "sqs_core" || var.sqs_core_queue_url != ""
      error_message = "record_destination is sqs_core but sqs_core_queue_url is empty."
    }
    precondition {
      condition     = var.kafka_brokers != "" || var.sqs_core_queue_url != "" || var.completion_outbox_only
      error_message = "Neither kafka_brokers nor sqs_core_queue_url is set, so no completion notice could be sent and every batch would be refused: set one, or completion_outbox_only = true to keep the notices in the bucket."
    }
    precondition {
      condition     = var.msk_cluster_arn == null || var.kafka_brokers != ""
      error_message = "msk_cluster_arn is set but kafka_brokers is empty: give the cluster's IAM bootstrap brokers."
    }
    precondition {
      condition     = (length(var.lambda_subnet_ids) == 0) == (length(var.lambda_security_group_ids) == 0)
      error_message = "lambda_subnet_ids and lambda_security_group_ids go together: give both or neither."
    }
    precondition {
      condition     = var.manage_bucket_eventbridge_notification == false || var.enable_manifest_trigger
      error_message = "manage_bucket_eventbridge_notification only makes sense with enable_manifest_trigger = true."
    }
  }
}

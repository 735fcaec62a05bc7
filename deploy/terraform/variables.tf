# Inputs of the scm-batch AWS module.
#
# The first group keeps the names (and defaults) of the original deployment's variables, so
# existing tfvars files still apply. Everything else has a default except `s3_bucket_name`,
# `batch_subnet_ids`, `batch_security_group_ids` and `batch_image_tag`.

# ---- The contract's variables -----------------------------------------------------------------

variable "batch_processing_threshold" {
  description = "A chunk of more records than this runs on AWS Batch instead of Lambda (as does one whose estimated time exceeds the Lambda timeout)."
  type        = number
  default     = 1000000

  validation {
    condition     = var.batch_processing_threshold >= 1 && floor(var.batch_processing_threshold) == var.batch_processing_threshold
    error_message = "batch_processing_threshold must be a whole number of records, at least 1."
  }
}

variable "max_records_per_chunk" {
  description = "Default maxChunkSize: the most records in one chunk, for an execution input that does not give one."
  type        = number
  default     = 500000

  validation {
    condition     = var.max_records_per_chunk >= 1 && floor(var.max_records_per_chunk) == var.max_records_per_chunk
    error_message = "max_records_per_chunk must be a whole number, at least 1."
  }
}

variable "max_concurrent_chunks" {
  description = "Default maxConcurrentChunks: the Map state's MaxConcurrency, how many chunks one execution runs at once."
  type        = number
  default     = 50

  validation {
    # 1000: the default regional concurrency of an account (and the distributed Map's own bound
    # is far above it).
    condition     = var.max_concurrent_chunks >= 1 && var.max_concurrent_chunks <= 1000 && floor(var.max_concurrent_chunks) == var.max_concurrent_chunks
    error_message = "max_concurrent_chunks must be a whole number from 1 to 1000."
  }
}

variable "batch_max_vcpus" {
  description = "The most vCPUs the Fargate compute environment runs at once (all chunk jobs together)."
  type        = number
  default     = 256

  validation {
    condition     = var.batch_max_vcpus >= 1 && floor(var.batch_max_vcpus) == var.batch_max_vcpus
    error_message = "batch_max_vcpus must be a whole number, at least 1."
  }
}

variable "batch_desired_vcpus" {
  description = "Kept so that existing tfvars files apply; Fargate compute environments take no desired vCPUs, so Fargate ignores it (and so does this module)."
  type        = number
  default     = 64
}

variable "batch_job_vcpus" {
  description = "vCPUs of one chunk job on Fargate: 0.25, 0.5, 1, 2, 4, 8 or 16 (and batch_job_memory must suit it)."
  type        = number
  default     = 4

  validation {
    condition     = contains([0.25, 0.5, 1, 2, 4, 8, 16], var.batch_job_vcpus)
    error_message = "batch_job_vcpus must be one of Fargate's sizes: 0.25, 0.5, 1, 2, 4, 8, 16."
  }
}

variable "batch_job_memory" {
  description = "Memory (MiB) of one chunk job; Fargate allows per vCPU count: 0.25 → 512-2048, 0.5 → 1024-4096, 1 → 2048-8192, 2 → 4096-16384, 4 → 8192-30720 (steps of 1024), 8 → 16384-61440 (steps of 4096), 16 → 32768-122880 (steps of 8192)."
  type        = number
  default     = 8192

  validation {
    condition     = var.batch_job_memory >= 512 && floor(var.batch_job_memory) == var.batch_job_memory
    error_message = "batch_job_memory must be a whole number of MiB, at least 512."
  }
}

variable "lambda_timeout" {
  description = "Timeout (seconds) of the update-records function, which processes a chunk; chunks whose estimated time exceeds it are routed to AWS Batch."
  type        = number
  default     = 900

  validation {
    condition     = var.lambda_timeout >= 30 && var.lambda_timeout <= 900 && floor(var.lambda_timeout) == var.lambda_timeout
    error_message = "lambda_timeout must be a whole number of seconds from 30 to 900 (the Lambda maximum)."
  }
}

variable "lambda_memory" {
  description = "Memory (MB) of the update-records function (Lambda gives CPU in proportion: 10240 MB is 6 vCPUs)."
  type        = number
  default     = 10240

  validation {
    condition     = var.lambda_memory >= 128 && var.lambda_memory <= 10240 && floor(var.lambda_memory) == var.lambda_memory
    error_message = "lambda_memory must be a whole number of MB from 128 to 10240."
  }
}

variable "estimated_processing_time_per_record" {
  description = "Seconds one record is expected to take on Lambda; with lambda_timeout it decides which chunks go to AWS Batch."
  type        = number
  default     = 0.005

  validation {
    condition     = var.estimated_processing_time_per_record > 0
    error_message = "estimated_processing_time_per_record must be greater than 0."
  }
}

variable "s3_bucket_name" {
  description = "An EXISTING bucket: it holds the input files (and manifests) and receives every output (metadata/, staged/, results/, errors/, validation/, final-results/, notifications/). The module does not create or change it."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.s3_bucket_name))
    error_message = "s3_bucket_name must be a bucket name (3-63 lowercase letters, digits, dots and hyphens), not an ARN or s3:// URI."
  }
}

variable "batch_subnet_ids" {
  description = "Subnets of the Fargate chunk jobs (private subnets with a route to S3, ECR, CloudWatch Logs and the Kafka brokers / SQS: a NAT gateway or VPC endpoints; jobs get no public IP)."
  type        = list(string)

  validation {
    condition     = length(var.batch_subnet_ids) > 0 && alltrue([for id in var.batch_subnet_ids : can(regex("^subnet-[0-9a-f]+$", id))])
    error_message = "batch_subnet_ids must list at least one subnet id (subnet-...)."
  }
}

variable "batch_security_group_ids" {
  description = "Security groups of the Fargate chunk jobs (outbound HTTPS, and the Kafka brokers' port when Kafka is used)."
  type        = list(string)

  validation {
    condition     = length(var.batch_security_group_ids) > 0 && alltrue([for id in var.batch_security_group_ids : can(regex("^sg-[0-9a-f]+$", id))])
    error_message = "batch_security_group_ids must list at least one security group id (sg-...)."
  }
}

variable "kafka_brokers" {
  description = "Kafka bootstrap brokers, host:port separated by commas (for MSK with IAM auth, the cluster's SASL/IAM bootstrap string, port 9098). Empty: no Kafka."
  type        = string
  default     = ""
}

variable "kafka_topic" {
  description = "Kafka topic of the per-record messages."
  type        = string
  default     = "processed-records"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]{1,249}$", var.kafka_topic))
    error_message = "kafka_topic must be a Kafka topic name (letters, digits, '.', '_', '-')."
  }
}

variable "sqs_core_queue_url" {
  description = "URL of the SQS Core queue (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME): per-record messages when record_destination is sqs_core, and the completion notice of CORE deployments. Empty: no SQS Core."
  type        = string
  default     = ""

  validation {
    condition     = var.sqs_core_queue_url == "" || can(regex("^https://sqs[.][a-z0-9-]+[.]amazonaws[.]com(?:[.]cn)?/[0-9]{12}/[A-Za-z0-9_-]{1,80}(?:[.]fifo)?$", var.sqs_core_queue_url))
    error_message = "sqs_core_queue_url must be empty or a queue URL of the form https://sqs.REGION.amazonaws.com/ACCOUNT/NAME."
  }
}

variable "record_destination" {
  description = "Where each processed record goes, for an execution input that does not say: kafka, sqs_core, or none (results stay in the bucket only)."
  type        = string
  default     = "kafka"

  validation {
    condition     = contains(["kafka", "sqs_core", "none"], var.record_destination)
    error_message = "record_destination must be kafka, sqs_core or none."
  }
}

# ---- Deployment -------------------------------------------------------------------------------

variable "name_prefix" {
  description = "Prefix of the names of the module's resources (roles, state machine, job queue, alarms...). The seven Lambda functions and the batch-proc queue keep the contract's fixed names, so one deployment per account and region."
  type        = string
  default     = "scm-batch"

  validation {
    # 24: the longest role name built from it ("<prefix>-aggregate-results") stays within IAM's 64.
    condition     = can(regex("^[a-z][a-z0-9-]{0,22}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 2-24 lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "tags" {
  description = "Tags for every resource the module creates."
  type        = map(string)
  default     = {}
}

variable "kms_key_arn" {
  description = "ARN of a customer managed KMS key for logs, queues, the alarm topic, the image repository, Lambda environments and written objects. Null: the module creates one (with rotation). A given key's policy must let CloudWatch Logs (logs.REGION.amazonaws.com), CloudWatch alarms (cloudwatch.amazonaws.com) and, with the manifest trigger, EventBridge (events.amazonaws.com) use it."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[0-9a-f-]+$", var.kms_key_arn))
    error_message = "kms_key_arn must be null or a KMS key ARN (arn:PARTITION:kms:REGION:ACCOUNT:key/ID)."
  }
}

variable "external_kms_key_arns" {
  description = "KMS keys of resources outside the module that the functions and the Batch job use: the bucket's SSE-KMS key for objects written before this deployment, the SQS Core queue's key. They get kms:Decrypt and kms:GenerateDataKey on them."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.external_kms_key_arns : can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[0-9a-f-]+$", arn))])
    error_message = "external_kms_key_arns must list KMS key ARNs (arn:PARTITION:kms:REGION:ACCOUNT:key/ID)."
  }
}

variable "log_retention_days" {
  description = "Retention of every log group the module creates (days; one of CloudWatch Logs' values)."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of CloudWatch Logs' retention values (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)."
  }
}

# ---- Lambda -----------------------------------------------------------------------------------

variable "lambda_package_path" {
  description = "Path of the Lambda deployment package built by `make lambda-package`. Null: dist/scm-batch-lambda.zip at the repository root (path.module/../../dist/scm-batch-lambda.zip)."
  type        = string
  default     = null
}

variable "lambda_reserved_concurrency" {
  description = "Reserved concurrency of each of the six light functions (all but update-records: see update_records_reserved_concurrency): how many executions may run the same step at once. -1 (the default): unreserved, since each runs once or twice per execution and reserving takes concurrency from the account's pool (AWS keeps 100 unreserved; a new account may have only 10 in all)."
  type        = number
  default     = -1

  validation {
    condition     = var.lambda_reserved_concurrency == -1 || (var.lambda_reserved_concurrency >= 1 && floor(var.lambda_reserved_concurrency) == var.lambda_reserved_concurrency)
    error_message = "lambda_reserved_concurrency must be -1 (unreserved) or a whole number, at least 1."
  }
}

variable "update_records_reserved_concurrency" {
  description = "Reserved concurrency of update-records, the function that processes chunks. -1 (the default): none, so the module deploys in any account (Lambda refuses a reservation that leaves fewer than 100 unreserved executions: in a new account, whose regional limit may be 10, any reservation fails). Reserve max_concurrent_chunks times the executions you run at once to guarantee them that capacity (and cap what they take from the account); a throttled chunk waits and is retried for days (2,000 attempts), not failed."
  type        = number
  default     = -1

  validation {
    condition     = var.update_records_reserved_concurrency == -1 || (var.update_records_reserved_concurrency >= 1 && floor(var.update_records_reserved_concurrency) == var.update_records_reserved_concurrency)
    error_message = "update_records_reserved_concurrency must be -1 (unreserved) or a whole number, at least 1."
  }
}

variable "lambda_subnet_ids" {
  description = "Subnets for the functions (needed to reach MSK or brokers inside a VPC). Empty: the functions run outside any VPC. Give lambda_security_group_ids with it."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.lambda_subnet_ids : can(regex("^subnet-[0-9a-f]+$", id))])
    error_message = "lambda_subnet_ids must list subnet ids (subnet-...)."
  }
}

variable "lambda_security_group_ids" {
  description = "Security groups for the functions when lambda_subnet_ids is set."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.lambda_security_group_ids : can(regex("^sg-[0-9a-f]+$", id))])
    error_message = "lambda_security_group_ids must list security group ids (sg-...)."
  }
}

# ---- AWS Batch --------------------------------------------------------------------------------

variable "batch_use_spot" {
  description = "Run chunk jobs on FARGATE_SPOT (cheaper; an interrupted job is retried) instead of FARGATE."
  type        = bool
  default     = false
}

variable "batch_image_tag" {
  description = "Tag of the Batch job image in the module's ECR repository (tags are immutable: push a new tag for a new image, then apply)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.batch_image_tag))
    error_message = "batch_image_tag must be an image tag: up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'."
  }
}

variable "batch_job_timeout" {
  description = "Seconds one attempt of a chunk job may run before AWS Batch stops it (the state machine also gives up on the job after this long)."
  type        = number
  default     = 14400

  validation {
    condition     = var.batch_job_timeout >= 60 && floor(var.batch_job_timeout) == var.batch_job_timeout
    error_message = "batch_job_timeout must be a whole number of seconds, at least 60."
  }
}

variable "batch_job_attempts" {
  description = "Attempts AWS Batch gives a chunk job (1-10). Only transient failures are retried: exit code 75 (EX_TEMPFAIL) and infrastructure failures; any other exit is final."
  type        = number
  default     = 3

  validation {
    condition     = var.batch_job_attempts >= 1 && var.batch_job_attempts <= 10 && floor(var.batch_job_attempts) == var.batch_job_attempts
    error_message = "batch_job_attempts must be a whole number from 1 to 10."
  }
}

# ---- Failure tolerance ------------------------------------------------------------------------

variable "tolerated_failure_percentage" {
  description = "Percentage of chunks that may fail (after their retries) with the batch still completing; the failed chunks are listed in the results."
  type        = number
  default     = 0

  validation {
    condition     = var.tolerated_failure_percentage >= 0 && var.tolerated_failure_percentage <= 100
    error_message = "tolerated_failure_percentage must be from 0 to 100."
  }
}

variable "tolerated_failure_count" {
  description = "Number of chunks that may fail (after their retries) with the batch still completing."
  type        = number
  default     = 0

  validation {
    condition     = var.tolerated_failure_count >= 0 && floor(var.tolerated_failure_count) == var.tolerated_failure_count
    error_message = "tolerated_failure_count must be a whole number, at least 0."
  }
}

# ---- Delivery ---------------------------------------------------------------------------------

variable "kafka_notification_topic" {
  description = "Kafka topic of the BATCH_COMPLETION_NOTIFICATION of WORKSPACE deployments."
  type        = string
  default     = "batch-notifications"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]{1,249}$", var.kafka_notification_topic))
    error_message = "kafka_notification_topic must be a Kafka topic name (letters, digits, '.', '_', '-')."
  }
}

variable "completion_outbox_only" {
  description = "Let batches run whose completion notice has no channel (no kafka_brokers for WORKSPACE, no sqs_core_queue_url for CORE): the notice is then only written to notifications/<batchId>/ in the bucket. False: such a batch is refused before any work."
  type        = bool
  default     = false
}

variable "msk_cluster_arn" {
  description = "ARN of the MSK cluster when Kafka is MSK with IAM authentication. Set: the functions and the Batch job authenticate with SASL OAUTHBEARER (MSK IAM) and get kafka-cluster permissions on this cluster and the two topics only. Null: plain Kafka."
  type        = string
  default     = null

  validation {
    condition     = var.msk_cluster_arn == null || can(regex("^arn:aws[a-z-]*:kafka:[a-z0-9-]+:[0-9]{12}:cluster/[A-Za-z0-9-]+/[A-Za-z0-9-]+$", var.msk_cluster_arn))
    error_message = "msk_cluster_arn must be null or an MSK cluster ARN (arn:PARTITION:kafka:REGION:ACCOUNT:cluster/NAME/UUID)."
  }
}

# ---- Manifest trigger -------------------------------------------------------------------------

variable "enable_manifest_trigger" {
  description = "Start an execution for every object created under manifest_prefix in the bucket (an EventBridge rule). The bucket must send events to EventBridge: turn that on in the bucket's settings, or set manage_bucket_eventbridge_notification."
  type        = bool
  default     = false
}

variable "manifest_prefix" {
  description = "Key prefix of the manifest objects that start an execution (with enable_manifest_trigger)."
  type        = string
  default     = "manifests/"

  validation {
    condition     = length(var.manifest_prefix) > 0 && !startswith(var.manifest_prefix, "/")
    error_message = "manifest_prefix must be a non-empty key prefix not starting with '/'."
  }
}

variable "manage_bucket_eventbridge_notification" {
  description = "Create the bucket's aws_s3_bucket_notification with EventBridge turned on. CAUTION: it REPLACES the bucket's whole notification configuration (existing Lambda/SQS/SNS notifications are removed); leave false and turn EventBridge on in the bucket's settings unless this module may own that configuration."
  type        = bool
  default     = false
}

# ---- Monitoring -------------------------------------------------------------------------------

variable "alarm_email" {
  description = "E-mail address subscribed to the alarm topic (the subscription must be confirmed from the e-mail). Null: no subscription."
  type        = string
  default     = null

  validation {
    condition     = var.alarm_email == null || can(regex("^[^@\\s]+@[^@\\s]+[.][^@\\s]+$", var.alarm_email))
    error_message = "alarm_email must be null or an e-mail address."
  }
}

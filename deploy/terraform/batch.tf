# Chunks too big or too slow for Lambda run as AWS Batch jobs on Fargate: the image from
# deploy/docker/Dockerfile, running `scm-batch aws process-chunk` for one chunk.

# ---- The image ----------------------------------------------------------------------------------

resource "aws_ecr_repository" "batch" {
  name                 = var.name_prefix
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = local.kms_key_arn
  }

  tags = local.tags
}

resource "aws_ecr_lifecycle_policy" "batch" {
  repository = aws_ecr_repository.batch.name

  policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "Untagged images (left by interrupted pushes) go after 7 days"
        selection = {
          tagStatus   = "untagged"
          countType   = "sinceImagePushed"
          countUnit   = "days"
          countNumber = 7
        }
        action = { type = "expire" }
      },
      {
        # Keep enough history to roll back; the tag the job definition names is the newest
        # unless more than 30 images were pushed after it.
        rulePriority = 2
        description  = "Keep the 30 most recent images"
        selection = {
          tagStatus   = "any"
          countType   = "imageCountMoreThan"
          countNumber = 30
        }
        action = { type = "expire" }
      },
    ]
  })
}

# ---- Compute ------------------------------------------------------------------------------------

# batch_desired_vcpus is one of the variables the users know, kept so that their tfvars apply.
# A Fargate compute environment has no desired vCPUs (it runs what is queued, up to
# batch_max_vcpus), so a value other than the default is reported as having no effect.
check "batch_desired_vcpus_has_no_effect_on_fargate" {
  assert {
    condition     = var.batch_desired_vcpus == 64
    error_message = "batch_desired_vcpus = ${var.batch_desired_vcpus} has no effect: Fargate compute environments take no desired vCPUs and scale up to batch_max_vcpus (${var.batch_max_vcpus}) on demand."
  }
}

resource "aws_batch_compute_environment" "fargate" {
  # A name prefix and create_before_destroy: switching FARGATE <-> FARGATE_SPOT replaces the
  # environment, and the job queue moves to the new one before the old one goes.
  compute_environment_name_prefix = "${var.name_prefix}-"
  type                            = "MANAGED"
  state                           = "ENABLED"
  # No service_role: AWS Batch uses its service-linked role (AWSServiceRoleForBatch).

  compute_resources {
    type               = var.batch_use_spot ? "FARGATE_SPOT" : "FARGATE"
    max_vcpus          = var.batch_max_vcpus
    subnets            = var.batch_subnet_ids
    security_group_ids = var.batch_security_group_ids
  }

  tags = local.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_batch_job_queue" "this" {
  name     = "${var.name_prefix}-chunks"
  state    = "ENABLED"
  priority = 1

  compute_environment_order {
    order               = 1
    compute_environment = aws_batch_compute_environment.fargate.arn
  }

  tags = local.tags
}

# ---- The job ------------------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "batch" {
  name              = "/aws/batch/${var.name_prefix}-process-chunk"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
  tags              = local.tags
}

locals {
  # scm_batch.aws.batch_job.JOB_COMMAND: Batch substitutes the Ref:: parameters that the
  # state machine's SubmitBatchJob passes (bucket, batchId, chunkId; strings). The image has no
  # ENTRYPOINT, so this is the whole command line of the container.
  batch_job_command = [
    "scm-batch", "aws", "process-chunk",
    "--bucket", "Ref::bucket",
    "--batch-id", "Ref::batchId",
    "--chunk-id", "Ref::chunkId",
  ]

  # Fargate's memory sizes (MiB) for each vCPU size: [min, max, step].
  fargate_memory = {
    "0.25" = [512, 2048, 512]
    "0.5"  = [1024, 4096, 1024]
    "1"    = [2048, 8192, 1024]
    "2"    = [4096, 16384, 1024]
    "4"    = [8192, 30720, 1024]
    "8"    = [16384, 61440, 4096]
    "16"   = [32768, 122880, 8192]
  }
  batch_memory_range = lookup(local.fargate_memory, tostring(var.batch_job_vcpus), [0, 0, 1])
  # 0.25 vCPU takes 512, 1024 or 2048 only.
  batch_memory_fits = (
    var.batch_job_memory >= local.batch_memory_range[0]
    && var.batch_job_memory <= local.batch_memory_range[1]
    && (var.batch_job_vcpus == 0.25
      ? contains([512, 1024, 2048], var.batch_job_memory)
    : var.batch_job_memory % local.batch_memory_range[2] == 0)
  )
}

resource "aws_batch_job_definition" "process_chunk" {
  name                  = "${var.name_prefix}-process-chunk"
  type                  = "container"
  platform_capabilities = ["FARGATE"]
  propagate_tags        = true
  # A running execution keeps the state machine definition it started with, and with it this
  # revision's ARN: the revision must stay ACTIVE after an apply makes a new one, or every chunk
  # the execution routes to Batch afterwards fails (Batch.ClientException, inactive revision).
  # Old revisions cost nothing; running batches finish on the image they started with. A change
  # that replaces this resource (retry_strategy, name) still deregisters every revision: apply it
  # while no batch runs.
  deregister_on_new_revision = false

  container_properties = jsonencode({
    image            = "${aws_ecr_repository.batch.repository_url}:${var.batch_image_tag}"
    command          = local.batch_job_command
    jobRoleArn       = aws_iam_role.batch_job.arn
    executionRoleArn = aws_iam_role.batch_execution.arn
    resourceRequirements = [
      { type = "VCPU", value = tostring(var.batch_job_vcpus) },
      { type = "MEMORY", value = tostring(var.batch_job_memory) },
    ]
    environment = [
      for name in sort(keys(local.runtime_environment)) :
      { name = name, value = local.runtime_environment[name] }
    ]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        "awslogs-group"         = aws_cloudwatch_log_group.batch.name
        "awslogs-region"        = local.region
        "awslogs-stream-prefix" = "process-chunk"
      }
    }
    networkConfiguration = {
      assignPublicIp = "DISABLED"
    }
    fargatePlatformConfiguration = {
      platformVersion = "LATEST"
    }
    runtimePlatform = {
      operatingSystemFamily = "LINUX"
      cpuArchitecture       = "X86_64"
    }
    # The job reads and writes S3 only (parts are streamed from memory, no temporary files) and
    # the image sets PYTHONDONTWRITEBYTECODE, so the root filesystem can be read-only.
    readonlyRootFilesystem = true
  })

  retry_strategy {
    attempts = var.batch_job_attempts

    # process-chunk exits 75 (EX_TEMPFAIL) exactly when its failure is transient (throttling, a
    # broker or endpoint that did not answer); any other non-zero exit is final.
    evaluate_on_exit {
      on_exit_code = "75"
      action       = "RETRY"
    }
    # Fargate could not start the task: image pull, ENI or secrets (ResourceInitializationError)
    # failures all report this status reason.
    evaluate_on_exit {
      on_status_reason = "Task failed to start*"
      action           = "RETRY"
    }
    # FARGATE_SPOT took the capacity back.
    evaluate_on_exit {
      on_status_reason = "Your Spot Task was interrupted*"
      action           = "RETRY"
    }
    evaluate_on_exit {
      on_reason = "CannotPullContainerError*"
      action    = "RETRY"
    }
    # Everything else (at most 5 entries are allowed) is final: without this entry AWS Batch
    # retries what matches nothing.
    evaluate_on_exit {
      on_reason = "*"
      action    = "EXIT"
    }
  }

  timeout {
    attempt_duration_seconds = var.batch_job_timeout
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = local.batch_memory_fits
      error_message = "batch_job_memory (${var.batch_job_memory} MiB) is not a Fargate size for batch_job_vcpus = ${var.batch_job_vcpus}; see the variable's description for the allowed values."
    }
  }
}

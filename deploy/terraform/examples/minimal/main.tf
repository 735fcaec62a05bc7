# The smallest deployment: the required inputs, Kafka on MSK with IAM auth, everything else at
# its default. Copy terraform.tfvars.example to terraform.tfvars, fill it in, then
#   terraform init && terraform apply

terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.80, < 6.0"
    }
  }
}

provider "aws" {
  region = var.region
}

variable "region" {
  description = "Region to deploy to (the bucket's region)."
  type        = string
}

variable "s3_bucket_name" {
  description = "The existing working bucket."
  type        = string
}

variable "batch_subnet_ids" {
  description = "Private subnets of the Fargate chunk jobs."
  type        = list(string)
}

variable "batch_security_group_ids" {
  description = "Security groups of the Fargate chunk jobs."
  type        = list(string)
}

variable "batch_image_tag" {
  description = "Tag of the Batch image pushed to the module's ECR repository."
  type        = string
}

variable "kafka_brokers" {
  description = "Kafka bootstrap brokers (MSK: the SASL/IAM bootstrap string)."
  type        = string
}

variable "msk_cluster_arn" {
  description = "MSK cluster ARN for IAM auth; null for plain Kafka."
  type        = string
  default     = null
}

variable "alarm_email" {
  description = "Where alarms are e-mailed; null for none."
  type        = string
  default     = null
}

module "scm_batch" {
  source = "../.."

  s3_bucket_name           = var.s3_bucket_name
  batch_subnet_ids         = var.batch_subnet_ids
  batch_security_group_ids = var.batch_security_group_ids
  batch_image_tag          = var.batch_image_tag
  kafka_brokers            = var.kafka_brokers
  msk_cluster_arn          = var.msk_cluster_arn
  alarm_email              = var.alarm_email

  # MSK brokers live in a VPC: the functions that talk to Kafka must too.
  lambda_subnet_ids         = var.msk_cluster_arn == null ? [] : var.batch_subnet_ids
  lambda_security_group_ids = var.msk_cluster_arn == null ? [] : var.batch_security_group_ids
}

output "state_machine_arn" {
  description = "Start executions with this."
  value       = module.scm_batch.state_machine_arn
}

output "ecr_repository_url" {
  description = "Push the Batch image here, tagged batch_image_tag."
  value       = module.scm_batch.ecr_repository_url
}

output "status_queue_url" {
  description = "The batch-proc status queue."
  value       = module.scm_batch.status_queue_url
}

output "dashboard_name" {
  description = "The CloudWatch dashboard."
  value       = module.scm_batch.dashboard_name
}

output "log_group_names" {
  description = "Log groups: one per function (by step), the Batch job's and the state machine's."
  value       = module.scm_batch.log_group_names
}

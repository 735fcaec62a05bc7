terraform {
  # 1.5: check blocks; every expression here is also valid on later 1.x releases.
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.80 or later: aws_batch_job_queue.compute_environment_order and the
      # aws_sfn_state_machine arguments used here. 6.x renames attributes this module reads
      # (data.aws_region.name, aws_batch_compute_environment naming), hence the upper bound.
      version = ">= 5.80, < 6.0"
    }
  }
}

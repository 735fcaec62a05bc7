"""The Step Functions state machine, generated from the code it runs so the two cannot drift.

``scm-batch aws definition`` prints it; ``--terraform`` prints the template the Terraform module
deploys (``deploy/terraform/state-machine.asl.json.tftpl``), in which the deployed resources'
ARNs and the module's numbers are ``${…}`` references.

Shape (state names are the contract's)::

    InitializeBatchProcessing → ValidateBatchConfig → CalculateChunks
      → ProcessChunksInParallel (Map over chunk items)
          ProcessChunk (Choice on the item's route) → ProcessWithLambda | SubmitBatchJob
          a failure after retries → RecordChunkFailure → SaveChunkFailure (into the ledger)
      → AggregateResults → ToleratedFailureCheck
          ├ within tolerance → DeploymentChoiceState → SendToKafka | SendToSqsCore
          │                    → SendToSQS (status message) → SuccessState
          └ beyond it ───────→ DescribeBatchFailure → ReportFailure → FailureState
    any step failing for good → FailureCause → IdentifyFailedBatch → FailureOf… → ReportFailure

Decisions:

* Every Task retries what may pass: Lambda's own service errors, and the project's transient
  errors by class name (:func:`scm_batch.retry.transient_error_names`), with the local run's
  retry policy (:class:`scm_batch.retry.RetryPolicy`) and full jitter. Every Task has a timeout.
* A chunk's failure is caught inside the Map, recorded in the bucket where the local run records
  it, and the Map goes on; ``AggregateResults`` applies the deployment's tolerance exactly as the
  local run does, and ``ToleratedFailureCheck`` acts on its verdict. (A Distributed Map's own
  ``ToleratedFailurePercentage`` is not relied on: the decision stays in one place.)
* Batch runs through ``batch:submitJob.sync`` (the state waits for the job; nothing polls) with
  string parameters only. Transient container failures are retried by the job definition's retry
  strategy (exit code 75), so the Task retries only Batch API errors.
* Chunk items are plan entries (byte ranges, ids; a few hundred bytes, never records). The
  distributed Map reads them from ``metadata/{batchId}/chunk-items.json`` (``ItemReader``), so
  the state stays small whatever the chunk count; the inline Map, for small deployments, takes
  them from the state and ``CalculateChunks`` refuses plans larger than ``max_inline_chunks``.
* Iterations output nothing (``OutputPath: null``) and the Map discards its result array: the
  ledger in the bucket is the record, and a large plan cannot overflow the state.
* ``ReportFailure`` sends a message built by ``Pass`` states from fields that exist on every
  path (a Choice tests which do), so reporting a failure cannot itself fail on a missing field.

Modules, by region of the workflow (this package's ``__all__`` is the API; the modules are not):

* :mod:`.resources`: the deployed resources the definition refers to (:class:`Resources`), for one
  account or as the Terraform template's variables.
* :mod:`.tasks`: building blocks: retriers, catchers, Lambda and SQS Tasks, the notified marker.
* :mod:`.main_path`: ``InitializeBatchProcessing`` … ``AggregateResults``, the verdict, delivery.
* :mod:`.chunk_map`: the Map over chunk items and the chunk iteration.
* :mod:`.failure_path`: reporting a failure, and failing the execution.
* :mod:`.machine`: :func:`build_definition` assembling the regions, and :func:`render`.
"""

from __future__ import annotations

from scm_batch.aws.definition.chunk_map import (
    BATCH_API_ERRORS,
    BATCH_QUEUE_ALLOWANCE,
    INLINE_MAP_MAX_CONCURRENCY,
    choose_map_mode,
)
from scm_batch.aws.definition.failure_path import (
    FAILURE_STATUS,
    LAMBDA_ERROR_ENVELOPE,
    WORKFLOW_FAILURE,
)
from scm_batch.aws.definition.machine import build_definition, render
from scm_batch.aws.definition.resources import (
    DEFAULT_MAX_INLINE_CHUNKS,
    FUNCTION_NAMES,
    LAMBDA_MAX_TIMEOUT,
    TEMPLATE_NUMBERS,
    TEMPLATE_STRINGS,
    Expr,
    MapMode,
    Number,
    Resources,
    resources_for_account,
    template_variable_of,
    template_variables,
    terraform_resources,
)
from scm_batch.aws.definition.tasks import (
    LAMBDA_SERVICE_ERRORS,
    LAMBDA_THROTTLED,
    SERVICE_CALL_TIMEOUT,
    TASK_TIMEOUT_MARGIN,
    THROTTLE_RETRY,
)

__all__ = [
    "BATCH_API_ERRORS",
    "BATCH_QUEUE_ALLOWANCE",
    "DEFAULT_MAX_INLINE_CHUNKS",
    "FAILURE_STATUS",
    "FUNCTION_NAMES",
    "INLINE_MAP_MAX_CONCURRENCY",
    "LAMBDA_ERROR_ENVELOPE",
    "LAMBDA_MAX_TIMEOUT",
    "LAMBDA_SERVICE_ERRORS",
    "LAMBDA_THROTTLED",
    "SERVICE_CALL_TIMEOUT",
    "TASK_TIMEOUT_MARGIN",
    "TEMPLATE_NUMBERS",
    "TEMPLATE_STRINGS",
    "THROTTLE_RETRY",
    "WORKFLOW_FAILURE",
    "Expr",
    "MapMode",
    "Number",
    "Resources",
    "build_definition",
    "choose_map_mode",
    "render",
    "resources_for_account",
    "template_variable_of",
    "template_variables",
    "terraform_resources",
]

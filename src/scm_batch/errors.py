"""The one error tree of scm-batch.

Every failure the project raises on purpose is a :class:`ScmBatchError`. Each class carries

* ``exit_code`` — what the command line exits with when this error ends a run, and
* ``transient`` — whether trying the same work again may succeed (read by retry policy).

Errors cross process boundaries (a chunk fails in a worker, the driver reports it), so every
subclass must survive ``pickle`` whatever its constructor looks like: ``__reduce__`` rebuilds the
instance from its message and attributes instead of calling ``__init__`` again.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ExitCode:
    """Process exit codes of the ``scm-batch`` command, documented in the README."""

    OK = 0
    INTERNAL = 1
    BAD_INPUT = 2
    VALIDATION_CRITICAL = 3
    CHUNKS_FAILED = 4
    COMPLETED_WITH_TOLERATED_FAILURES = 5
    UNAVAILABLE = 6
    INTERRUPTED = 130  # Ctrl-C (SIGINT)
    BROKEN_PIPE = 141  # standard output closed early, as a shell reports SIGPIPE
    TERMINATED = 143  # SIGTERM: how containers and schedulers stop a job


def _restore(cls: type[ScmBatchError], message: str, state: dict[str, Any]) -> ScmBatchError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class ScmBatchError(Exception):
    """Root of every error scm-batch raises deliberately."""

    exit_code: ClassVar[int] = ExitCode.INTERNAL
    transient: ClassVar[bool] = False

    def __init__(self, message: str) -> None:
        super().__init__(message)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (type(self), self.message, dict(self.__dict__)))


class ConfigError(ScmBatchError):
    """An execution input field or an option is missing or has a value that cannot work."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class InputError(ScmBatchError):
    """The input object is missing, empty, not a file, or otherwise unusable."""

    exit_code = ExitCode.BAD_INPUT


class InputFormatError(InputError):
    """The input object is not in a format this version can process."""


class InputStructureError(InputFormatError):
    """A JSON array whose structure is broken (not closed, closed by the wrong bracket, data after
    its end) or a compressed stream that is corrupt or cut short: refused before any chunk runs,
    naming the byte offset where it went wrong."""


class InputChangedError(InputError):
    """The input object no longer matches the plan made from it."""


class StorageError(ScmBatchError):
    """Reading or writing the working bucket failed for a reason that may pass (an I/O hiccup, a
    full disk): the environment's failure, not the input's nor a bug."""

    exit_code = ExitCode.UNAVAILABLE
    transient = True


class ObjectNotFoundError(StorageError):
    """The bucket or an object in it does not exist, or is not a regular object."""

    exit_code = ExitCode.BAD_INPUT
    transient = False


class StorageAccessError(StorageError):
    """The bucket refused access; trying again will not help."""

    exit_code = ExitCode.BAD_INPUT
    transient = False


class WrongRegionError(StorageError):
    """The bucket lives in another region than the client was configured for."""

    exit_code = ExitCode.BAD_INPUT
    transient = False


class StorageRequestError(StorageError):
    """The storage service refused a request for a reason that will not pass by itself."""

    exit_code = ExitCode.BAD_INPUT
    transient = False


class StorageUnavailableError(StorageError):
    """The storage endpoint does not answer (down, unreachable, timing out)."""

    exit_code = ExitCode.UNAVAILABLE
    transient = True


class DeliveryError(ScmBatchError):
    """Records or notifications could not be delivered; the broker or queue may recover."""

    exit_code = ExitCode.UNAVAILABLE
    transient = True


class DeliveryUnavailableError(DeliveryError):
    """The broker or queue does not answer."""


class DeliveryRejectedError(DeliveryError):
    """The broker or queue refused a message for good (too large, malformed, not allowed)."""

    exit_code = ExitCode.BAD_INPUT
    transient = False


class BatchExistsError(ScmBatchError):
    """A batch with this id already has outputs in the bucket."""

    exit_code = ExitCode.BAD_INPUT


class BatchBusyError(ScmBatchError):
    """Another run of this batch is going on (it holds the batch's lease): one at a time."""

    exit_code = ExitCode.UNAVAILABLE


class LeaseLostError(ScmBatchError):
    """This run's lease on its batch was taken over (it could not renew it in time): it stops
    rather than write beside the run that took over."""

    exit_code = ExitCode.UNAVAILABLE


class DeliveryChangedError(ScmBatchError):
    """A batch resumed with delivery settings other than those it was planned with: the same
    batch, so (unlike :class:`BatchExistsError`) its status is reported."""

    exit_code = ExitCode.BAD_INPUT


class OutputFormatChangedError(ScmBatchError):
    """A batch resumed asking for another result format than the one it was planned with: its
    finished chunks' parts are in the planned format, and one batch does not mix two."""

    exit_code = ExitCode.BAD_INPUT


class WorkerDiedError(ScmBatchError):
    """The process running a chunk ended abruptly (killed, out of memory); worth another try."""

    exit_code = ExitCode.CHUNKS_FAILED
    transient = True


class InjectedTransientError(ScmBatchError):
    """A failure planted by the test-only fault switch, marked transient."""

    transient = True


class InjectedTerminalError(ScmBatchError):
    """A failure planted by the test-only fault switch, marked terminal."""


class NothingToResumeError(ScmBatchError):
    """``resume`` was asked for a batch that has no plan in the bucket."""

    exit_code = ExitCode.BAD_INPUT


class ChunkFailedError(ScmBatchError):
    """A chunk could not be processed; stands in for an error that could not cross processes,
    keeping its class name, its message and whether it was worth another try."""

    exit_code = ExitCode.CHUNKS_FAILED

    def __init__(
        self, chunk_id: str, error_type: str, detail: str, *, retryable: bool = False
    ) -> None:
        super().__init__(f"{chunk_id} failed: {error_type}: {detail}")
        self.chunk_id = chunk_id
        self.error_type = error_type
        self.detail = detail
        self.retryable = retryable


class RebuildFailedError(ScmBatchError):
    """Damaged parts of a finished batch could not be rebuilt: its outcome stands, the chunk
    stays to rebuild."""

    exit_code = ExitCode.CHUNKS_FAILED


class PlanTooLargeError(ScmBatchError):
    """The plan has more chunks than the deployment can pass through its state (an inline Map)."""

    exit_code = ExitCode.BAD_INPUT


class PlanOnBatchError(ScmBatchError):
    """On AWS: the input must be read whole to be planned (compressed, or a JSON array) and is
    more than the planning function reads in its time; the state machine catches this and has
    an AWS Batch job plan it. Never raised on one machine."""


class PlanningFailedError(ScmBatchError):
    """The AWS Batch job planning a batch ended without a plan and without saying why."""


def recorded_error(name: str, message: str) -> ScmBatchError:
    """An error recorded by name in one process (an AWS Batch job), raised again in another with
    the same class name and message, so that the state machine and the reader see the same."""
    cls = globals().get(name)
    if not (isinstance(cls, type) and issubclass(cls, ScmBatchError)):
        cls = ScmBatchError
        message = f"{name}: {message}"
    return _restore(cls, message, {})


class ExecutorBrokenError(ScmBatchError):
    """The executor itself failed (not a chunk): the run stops; resume it once the cause is gone."""


class ClusterError(ExecutorBrokenError):
    """The cluster the chunks were to run on cannot run them: its scheduler does not answer, no
    worker joins, or a worker cannot reach the input or the bucket (named in the message)."""

    exit_code = ExitCode.UNAVAILABLE

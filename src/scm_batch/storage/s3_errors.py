"""What an S3 error means, in the project's error tree: the class a caller can act on (missing,
denied, wrong region, changed, unavailable, refused) and one line that says so."""

from __future__ import annotations

import botocore.exceptions

from scm_batch.errors import (
    InputChangedError,
    ObjectNotFoundError,
    ScmBatchError,
    StorageAccessError,
    StorageError,
    StorageRequestError,
    StorageUnavailableError,
    WrongRegionError,
)

_ACCESS_CODES = {
    "403",
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
}
_REGION_CODES = {
    "301",
    "PermanentRedirect",
    "AuthorizationHeaderMalformed",
    "IllegalLocationConstraintException",
}
_BUSY_CODES = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "503", "500"}
_UNAVAILABLE = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.SSLError,
    botocore.exceptions.ProxyConnectionError,
    botocore.exceptions.HTTPClientError,
)


def storage_error(error: Exception, what: str, *, bucket: str, endpoint: str) -> ScmBatchError:
    """The error to raise for ``error`` (botocore's), met doing ``what``."""
    if isinstance(
        error,
        botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError,
    ):
        return StorageAccessError(
            f"{what}: no AWS credentials found (environment, profile, or instance role)"
        )
    if isinstance(error, _UNAVAILABLE):
        return StorageUnavailableError(f"{what}: cannot reach {endpoint}: {error}")
    if not isinstance(error, botocore.exceptions.ClientError):
        return StorageError(f"{what}: {type(error).__name__}: {error}")
    return _answered(error, what, bucket, endpoint)


def _answered(
    error: botocore.exceptions.ClientError, what: str, bucket: str, endpoint: str
) -> ScmBatchError:
    """The error for what S3 answered."""
    details = error.response.get("Error", {})
    code = str(details.get("Code", ""))
    status = str(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    if code in ("NoSuchBucket", "NoSuchKey", "404", "NoSuchUpload"):
        missing = f"{what}: no such object"
        if code == "NoSuchBucket":
            missing = f"bucket s3://{bucket} does not exist"
        return ObjectNotFoundError(missing)
    if code in _ACCESS_CODES or status == "403":
        return StorageAccessError(f"{what}: access denied ({code})")
    if code in _REGION_CODES or status == "301":
        headers = error.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        region = headers.get("x-amz-bucket-region", "another region")
        return WrongRegionError(
            f"{what}: bucket {bucket} is in {region}; use --region {region} (or set AWS_REGION)"
        )
    if code == "PreconditionFailed":
        return InputChangedError(f"{what}: the object changed while it was being read")
    if code in _BUSY_CODES or status.startswith("5"):
        return StorageUnavailableError(
            f"{what}: {endpoint} is failing or throttling ({code or status}) even after retries"
        )
    return StorageRequestError(f"{what}: {code}: {details.get('Message', '')}")

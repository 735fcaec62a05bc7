"""The price sheet an estimate is costed with: the built-in AWS list prices, or a user's file.

The built-in sheet (``prices/aws-us-east-1.json``, shipped in the package) holds AWS's published
list prices for us-east-1 as the authors knew them on its ``pricesAsOf`` date: written by hand,
never fetched live. A user's file (``--prices FILE``) has the same schema and replaces it whole;
it is checked field by field, and anything missing, not a number or negative is one
configuration error naming the file and the field, before anything is estimated.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Annotated

import msgspec

from scm_batch.errors import ConfigError
from scm_batch.model import CamelStruct

BUILT_IN = "aws-us-east-1.json"
SCHEMA_VERSION = 1

Price = Annotated[float, msgspec.Meta(ge=0)]  # a price is a number, never negative


class LambdaPrices(CamelStruct, frozen=True):
    per_gb_second: Price
    per_million_requests: Price


class StepFunctionsPrices(CamelStruct, frozen=True):
    per_thousand_state_transitions: Price


class S3Prices(CamelStruct, frozen=True):
    per_thousand_put_copy_post_list: Price
    per_thousand_get_and_other: Price  # GET, HEAD and every other request S3 bills alike


class SqsPrices(CamelStruct, frozen=True):
    per_million_standard_requests: Price
    per_million_fifo_requests: Price
    # Each this many bytes of a request's payload is billed as one request (64 KiB).
    billed_chunk_bytes: Annotated[int, msgspec.Meta(ge=1)]


class FargatePrices(CamelStruct, frozen=True, omit_defaults=True):
    per_vcpu_hour: Price
    per_gb_hour: Price
    note: str | None = None


class DataTransferPrices(CamelStruct, frozen=True):
    s3_to_compute_same_region_per_gb: Price
    out_to_internet_per_gb: Price


class DaskInstance(CamelStruct, frozen=True, omit_defaults=True):
    """The machine a Dask cluster is assumed to run on, one worker per vCPU."""

    instance_type: str
    vcpus: Annotated[int, msgspec.Meta(ge=1)]
    memory_gib: Price
    per_hour: Price
    note: str | None = None


class PriceSheet(CamelStruct, frozen=True):
    """Every price an estimate uses, with where the figures come from and as of when."""

    schema_version: int
    region: str
    currency: str
    prices_as_of: date
    source: str
    lambda_: LambdaPrices = msgspec.field(name="lambda")
    step_functions: StepFunctionsPrices
    s3: S3Prices
    sqs: SqsPrices
    fargate: FargatePrices
    fargate_spot: FargatePrices
    data_transfer: DataTransferPrices
    dask_instance: DaskInstance


@dataclass(frozen=True, slots=True)
class LoadedPrices:
    """A price sheet and where it was read from (a path, or the built-in file's name)."""

    sheet: PriceSheet
    origin: str
    built_in: bool


def parse_prices(data: bytes, origin: str) -> PriceSheet:
    """The sheet in ``data`` (JSON), or a ``ConfigError`` naming ``origin`` and what is wrong."""
    try:
        sheet = msgspec.json.decode(data, type=PriceSheet)
    except msgspec.DecodeError as exc:  # ValidationError included: one line, with the field's path
        raise ConfigError("--prices", f"{origin}: {exc}") from None
    if sheet.schema_version != SCHEMA_VERSION:
        raise ConfigError(
            "--prices",
            f"{origin}: schemaVersion {sheet.schema_version} is not one this version reads "
            f"({SCHEMA_VERSION})",
        )
    return sheet


def load_prices(path: Path | None = None) -> LoadedPrices:
    """The user's sheet at ``path``, or the built-in one."""
    if path is None:
        # Its path where the package is installed, to copy and edit for --prices.
        built_in = resources.files(__package__).joinpath("prices", BUILT_IN)
        origin = str(built_in)
        return LoadedPrices(parse_prices(built_in.read_bytes(), origin), origin, built_in=True)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError("--prices", f"{path}: cannot read it: {exc.strerror or exc}") from None
    return LoadedPrices(parse_prices(data, str(path)), str(path), built_in=False)

"""What the peers share: their command line, and the validation rules of scm-batch's defaults.

The rules are those of ``scm_batch.records.validate.is_valid`` (the rules the original system ran),
restated here so that the peers do not lean on the code they are measured against; the harness's
record-count check catches any drift. The peers stamp the same fields as scm-batch's transform:
``processedAt``, ``customerId``, ``tenantId``, a new ``gssId``, and ``id`` moved to ``originalId``
and replaced by ``{customerId}_{tenantId}_{uuid}``.
"""

from __future__ import annotations

import argparse
import hashlib
from dataclasses import dataclass
from pathlib import Path

REQUIRED_FIELDS = ("id", "name", "email", "status", "createdAt", "updatedAt")
STATUSES = ("active", "inactive", "pending", "suspended", "deleted")
NAME_MIN, NAME_MAX = 2, 255
# Matched against the whole value (fullmatch, or anchored with ^...$ where only search exists).
EMAIL = r"[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}"
TIMESTAMP = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{3})?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})"
)
RESULTS = "results.jsonl"  # what every peer writes into its output directory
PARQUET_RESULTS = "results.parquet"  # or this, with --output-format parquet


@dataclass(frozen=True, slots=True)
class PeerArgs:
    input: Path
    output_dir: Path
    customer_id: str
    tenant_id: str
    batch_id: str
    processed_at: str
    output_format: str = "json"  # or "parquet" (DuckDB's peer only)

    @property
    def results(self) -> Path:
        return self.output_dir / RESULTS


def parse_args(description: str) -> PeerArgs:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("input", type=Path, help="JSON Lines input")
    parser.add_argument("output_dir", type=Path, help=f"directory to write {RESULTS} into")
    parser.add_argument("--customer-id", default="c")
    parser.add_argument("--tenant-id", default="t")
    parser.add_argument("--batch-id", default="bench")
    parser.add_argument("--processed-at", default="2026-01-01T00:00:00.000Z")
    parser.add_argument("--output-format", choices=["json", "parquet"], default="json")
    ns = parser.parse_args()
    ns.output_dir.mkdir(parents=True, exist_ok=True)
    return PeerArgs(
        input=ns.input,
        output_dir=ns.output_dir,
        customer_id=ns.customer_id,
        tenant_id=ns.tenant_id,
        batch_id=ns.batch_id,
        processed_at=ns.processed_at,
        output_format=ns.output_format,
    )


def uuid_prefix(batch_id: str, purpose: str) -> str:
    """24 characters of a version-8 UUID fixed per batch and purpose; a 12-digit number ends it."""
    h = hashlib.sha256(f"bench\x00{purpose}\x00{batch_id}".encode()).hexdigest()
    return f"{h[0:8]}-{h[8:12]}-8{h[12:15]}-a{h[15:18]}-"

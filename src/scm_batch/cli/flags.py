"""The command line's options, in groups that commands share.

Options of settings are made from the settings table (:data:`scm_batch.settings.SETTINGS`): the
flag, its help and its environment variable are written once, there. :func:`command` registers a
command whose body takes the values given, by parameter name, whatever groups it was built from;
``run`` and ``resume`` share their groups instead of repeating twenty options each.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.markup import escape

from scm_batch.cli.console import guarded
from scm_batch.settings import SETTINGS, Group, Setting, Settings, load_settings

REQUIRED: Any = inspect.Parameter.empty  # the default of an option that must be given


@dataclass(frozen=True, slots=True)
class Given:
    """What a command was given: its options' values by parameter name (``None``: not given),
    and the groups of settings it has options for."""

    values: Mapping[str, Any]
    groups: frozenset[Group]

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def settings(self, *also: Group) -> Settings:
        """The settings of the command's groups, and of the groups ``also`` (settings without
        flags it reads too): a variable of a setting the command has no use for is not read."""
        return load_settings(os.environ, self.values, groups={*self.groups, *also})


Body = Callable[[typer.Context, Given], int | None]


@dataclass(frozen=True, slots=True)
class Flag:
    """One command-line option: its parameter name, ``Annotated`` type and default, and the
    group of the setting it gives, if it gives one."""

    name: str
    annotation: Any
    default: Any = None
    group: Group | None = None


def option(name: str, kind: Any, *decls: str, default: Any = None, **settings: Any) -> Flag:
    """An option ``name`` of type ``kind`` declared as ``decls`` (``typer.Option`` settings)."""
    return Flag(name, Annotated[kind, typer.Option(*decls, **settings)], default)


# ---- options made from settings -----------------------------------------------------------------
def _default_text(setting: Setting) -> str | None:
    """The setting's default as ``--help`` shows it, or ``None`` when there is none to show."""
    value: Any = Settings()
    for name in setting.paths[0]:
        fields = {f.encode_name: f.name for f in msgspec.structs.fields(value)}
        value = getattr(value, fields[name])
    if value is None or isinstance(value, bool) or setting.name == "workers":
        return None  # workers: one per core, which the help says
    return str(value)


def _setting_flag(setting: Setting) -> Flag:
    """The option of a setting. Its default is ``None`` (not given), so that the loader can tell
    a flag from the environment variable under it; the help says the real default and variable
    (escaped: typer's help reads square brackets as markup)."""
    assert setting.flag is not None
    shown = _default_text(setting)
    notes = "".join(
        f" [{note}]"
        for note in (
            f"env var: {setting.env}" if setting.env else None,
            f"default: {shown}" if shown is not None else None,
        )
        if note is not None
    )
    text = escape(setting.help + notes)
    if setting.kind.type is bool and "/" not in setting.flag:  # an on/off flag: --overwrite
        switch = Annotated[bool, typer.Option(setting.flag, help=text)]
        return Flag(setting.name, switch, False, setting.group)
    kind: Any = setting.kind.type | None
    return Flag(
        setting.name, Annotated[kind, typer.Option(setting.flag, help=text)], None, setting.group
    )


def of_settings(group: Group) -> tuple[Flag, ...]:
    """The options of a group's settings that have a flag, in the table's order."""
    return tuple(_setting_flag(s) for s in SETTINGS if s.group == group and s.flag is not None)


# ---- the groups ---------------------------------------------------------------------------------
# The execution input's fields (flags override an --input file's, a manifest's or an event's).
JOB = (
    option(
        "input_file",
        Path | None,
        "--input",
        "-i",
        help="Execution input JSON file (the contract's event); flags override it.",
    ),
    option(
        "bucket",
        str | None,
        "--bucket",
        help="Working bucket: s3://name, or a local directory (path or file:// URI).",
        envvar="SCM_BATCH_BUCKET",
    ),
    option("file", str | None, "--file", help="Key of the input object inside the bucket."),
    option("customer_id", str | None, "--customer-id", help="customerId stamped on every record."),
    option("tenant_id", str | None, "--tenant-id", help="tenantId stamped on every record."),
    option("batch_id", str | None, "--batch-id", help="batchId: names every output of the run."),
    option("snapshot_id", str | None, "--snapshot-id", help="snapshotId (optional)."),
    option("deployment", str | None, "--deployment", help="WORKSPACE (default) or CORE."),
    option(
        "destination",
        str | None,
        "--destination",
        help="Where records go: kafka, sqs_core or none (default: what is configured).",
    ),
    option(
        "target_total_records",
        int | None,
        "--target-total-records",
        help="Expected record count; sizes chunks when lines are not counted.",
    ),
    option(
        "max_concurrent_chunks",
        int | None,
        "--max-concurrent-chunks",
        help="maxConcurrentChunks: the file is split at least this many ways (default 50).",
    ),
    option(
        "max_chunk_size",
        int | None,
        "--max-chunk-size",
        help="maxChunkSize: records per chunk at most (default 500000).",
    ),
    option(
        "processed_at",
        str | None,
        "--processed-at",
        help="Pin processedAt (e.g. 2026-01-31T12:00:00.000Z) to reproduce a batch exactly.",
    ),
    option(
        "manifest",
        str | None,
        "--manifest",
        help="Read the execution input from a manifest object: s3://bucket/key.",
    ),
    option(
        "event",
        Path | None,
        "--event",
        help="An EventBridge S3 'Object Created' event (JSON file) naming a manifest.",
    ),
)
# The execution input's fields by parameter name, under their contract names.
JOB_FIELDS = {
    "bucket": "bucket",
    "file": "file",
    "customer_id": "customerId",
    "tenant_id": "tenantId",
    "batch_id": "batchId",
    "snapshot_id": "snapshotId",
    "deployment": "deployment",
    "destination": "destination",
    "target_total_records": "targetTotalRecords",
    "max_concurrent_chunks": "maxConcurrentChunks",
    "max_chunk_size": "maxChunkSize",
    "processed_at": "processedAt",
}
# A batch already planned, named by its bucket and id.
BATCH = (
    option(
        "bucket",
        str,
        "--bucket",
        default=REQUIRED,
        help="The batch's bucket: s3://name or a local directory.",
        envvar="SCM_BATCH_BUCKET",
    ),
    option("batch_id", str, "--batch-id", default=REQUIRED, help="The batch id."),
)
PROGRESS = (
    option(
        "progress",
        str,
        "--progress",
        default="auto",
        help="auto (live in a terminal, log lines otherwise), live, log or none.",
        envvar="SCM_BATCH_PROGRESS",
    ),
)
METRICS = (
    option(
        "metrics_file",
        Path | None,
        "--metrics-file",
        help="Write the run's metrics to this file in Prometheus text format (for the node "
        "exporter's textfile collector): every 5 s while chunks run, and when it ends.",
        envvar="SCM_BATCH_METRICS_FILE",
    ),
)
JSON = (
    option("as_json", bool, "--json", default=False, help="Print the result as JSON on stdout."),
)
# plan --estimate. --workers is run's option (the pool the estimate times), without its group:
# plan reads run's execution settings only when it estimates (the caller asks for them then).
ESTIMATE = (
    option(
        "estimate",
        bool,
        "--estimate",
        default=False,
        help="Estimate the batch's wall time and cost on this machine, AWS (Lambda, Batch on "
        "Fargate and Fargate Spot) and a Dask cluster, calibrated on a sample of the input.",
    ),
    Flag(
        "workers",
        Annotated[
            int | None,
            typer.Option(
                "--workers",
                help=escape(
                    "With --estimate: the local pool's worker processes, as run's --workers "
                    "(default: one per core). [env var: SCM_BATCH_WORKERS]"
                ),
            ),
        ],
    ),
    option(
        "estimate_dask_workers",
        int | None,
        "--estimate-dask-workers",
        help="With --estimate: the Dask cluster's workers, one a vCPU (default: 8).",
    ),
    option(
        "prices",
        Path | None,
        "--prices",
        help="With --estimate: a price file of your own (the built-in one's schema) instead of "
        "the built-in AWS us-east-1 list prices.",
    ),
)


def command(app: typer.Typer, *groups: tuple[Flag, ...] | Group) -> Callable[[Body], Body]:
    """Register ``body`` as a command of ``app`` taking the options of ``groups`` (option groups
    of this module, or groups of settings by name): typer reads the options from the signature
    made here, and ``body`` gets what was given as one :class:`Given`. Its failures end the
    command with one line and an exit code (:func:`scm_batch.cli.console.guarded`).
    """
    flags = [
        flag
        for group in groups
        for flag in (of_settings(group) if isinstance(group, str) else group)
    ]

    def register(body: Body) -> Body:
        def command_line(ctx: typer.Context, **values: Any) -> None:
            given = Given(values, frozenset(f.group for f in flags if f.group is not None))
            raise typer.Exit(guarded(ctx, lambda: body(ctx, given)) or 0)

        context = inspect.Parameter(
            "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
        )
        parameters = [
            inspect.Parameter(
                f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.annotation
            )
            for f in flags
        ]
        signature = inspect.Signature([context, *parameters])
        command_line.__signature__ = signature  # type: ignore[attr-defined]
        command_line.__annotations__ = {p.name: p.annotation for p in [context, *parameters]}
        command_line.__name__ = body.__name__
        command_line.__doc__ = body.__doc__
        app.command(body.__name__.replace("_", "-"))(command_line)
        return body

    return register

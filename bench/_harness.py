"""What every benchmark shares, in one namespace (``import _harness as h``): the reference
tools and child processes (``_procs``), the HTTP load client (``_http_load``), Postyard
under test (``_postyard``), memory sampling (``_memory``), reporting (``_report``) and the
convention with `make bench` (``_summary``). Each lives in its own module; this one only
gathers them.

Benchmarks print ratios against a reference measured in the same run on the same machine;
nothing here asserts on time.
"""

from __future__ import annotations

from _http_load import (
    HttpTarget,
    LoadResult,
    PacedResult,
    TooManyErrors,
    percentile_ms,
    post_paced,
    post_until_accepted,
    read_response,
)
from _memory import PeakMemory, role_of, sample_memory
from _postyard import (
    POSTYARD,
    Ledger,
    Postmaster,
    http_status,
    log_problems,
    postyard_cli,
    postyard_env,
    postyard_role,
    stop_leftover_postgres,
    superuser_connection,
)
from _procs import (
    LOOPBACK,
    START_GUARD_SECONDS,
    STOP_GUARD_SECONDS,
    ensure_postfix_tools,
    free_port,
    lasting_leftovers,
    leftover_processes,
    postfix_tool,
    postfix_version,
    smtp_sink,
    smtp_source_rate,
    stop_process,
    wait_for_port,
)
from _report import (
    busy_percent,
    cpu_model,
    git_revision,
    machine_facts,
    markdown_table,
    replace_section,
    today_utc,
)
from _summary import (
    PERFORMANCE_DOC,
    REPOSITORY,
    Figure,
    report_figures,
    standard_arguments,
)

__all__ = [
    "LOOPBACK",
    "PERFORMANCE_DOC",
    "POSTYARD",
    "REPOSITORY",
    "START_GUARD_SECONDS",
    "STOP_GUARD_SECONDS",
    "Figure",
    "HttpTarget",
    "Ledger",
    "LoadResult",
    "PacedResult",
    "PeakMemory",
    "Postmaster",
    "TooManyErrors",
    "busy_percent",
    "cpu_model",
    "ensure_postfix_tools",
    "free_port",
    "git_revision",
    "http_status",
    "lasting_leftovers",
    "leftover_processes",
    "log_problems",
    "machine_facts",
    "markdown_table",
    "percentile_ms",
    "post_paced",
    "post_until_accepted",
    "postfix_tool",
    "postfix_version",
    "postyard_cli",
    "postyard_env",
    "postyard_role",
    "read_response",
    "replace_section",
    "report_figures",
    "role_of",
    "sample_memory",
    "smtp_sink",
    "smtp_source_rate",
    "standard_arguments",
    "stop_leftover_postgres",
    "stop_process",
    "superuser_connection",
    "today_utc",
    "wait_for_port",
]

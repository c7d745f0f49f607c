"""Following container logs off the UI thread: one thread and one raw stream per
container, a bounded ring buffer, and a hand-off queue the UI drains in batches.
Services outside Docker (`runtime = "process"`) are followed the same way through their
`log_file` (`FileLogFollower`: tail, then poll for growth, truncation and rotation).

- `line`: `LogLine`, the stored line (redacted and classified lazily), `RecentEvents`;
- `docker_stream`: the raw Docker stream, Docker's timestamps, frame parsing
  (`LineAssembler`), the source protocols, `LightLogSource` (a local socket, standard
  library) and `DockerLogSource` (docker-py: TCP, TLS, SSH, CLI contexts);
- `follower`: `LogFollower`, one container followed across stops, restarts and removal;
- `files`: `FileLogSource` / `FileLogFollower`, the log files of process services;
- `hub`: `LogHub` (one follower per service, secrets for the Redactor) and `MergedLogs`.

Everything callers used from the former single module is re-exported here.
Nothing here imports Textual: `genai_tui.ui.logs.LogPanel` renders what this produces.
"""

from __future__ import annotations

from genai_tui.sources.logs.docker_stream import (
    DOCKER_PART,
    RAW_LINE_CAP,
    ContainerGone,
    DockerLogSource,
    LightLogSource,
    LineAssembler,
    LogSource,
    RawStream,
    SourceUnavailable,
    Target,
    format_since,
    parse_ts,
)
from genai_tui.sources.logs.files import (
    FILE_CHUNK,
    FILE_ERROR_POLL,
    FILE_MISSING_POLL,
    FILE_POLL,
    TAIL_SCAN_MAX,
    FileLogFollower,
    FileLogSource,
    NotRegularFile,
)
from genai_tui.sources.logs.follower import BATCH_BYTES, BATCH_WINDOW, STATES, LogFollower
from genai_tui.sources.logs.hub import (
    LogHub,
    MergedLogs,
    configured_secrets,
    make_docker_client,
    merge_sorted,
)
from genai_tui.sources.logs.line import EVENTS_PER_KIND, LATER, META, LogLine, RecentEvents

__all__ = [
    # line
    "EVENTS_PER_KIND", "LATER", "META", "LogLine", "RecentEvents",
    # docker_stream
    "DOCKER_PART", "RAW_LINE_CAP", "ContainerGone", "DockerLogSource", "LightLogSource",
    "LineAssembler", "LogSource",
    "RawStream", "SourceUnavailable", "Target", "format_since", "parse_ts",
    # follower
    "BATCH_BYTES", "BATCH_WINDOW", "STATES", "LogFollower",
    # files
    "FILE_CHUNK", "FILE_ERROR_POLL", "FILE_MISSING_POLL", "FILE_POLL", "TAIL_SCAN_MAX",
    "FileLogFollower", "FileLogSource", "NotRegularFile",
    # hub
    "LogHub", "MergedLogs", "configured_secrets", "make_docker_client", "merge_sorted",
]

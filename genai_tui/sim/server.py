"""Entry point: pick the simulated service, apply the scenario, serve until SIGTERM.

Scenarios (``--scenario`` / ``SIM_SCENARIO``):

- ``healthy``: normal start-up log, then serve.
- ``slow_start``: start-up lines are spread over ``--delay`` seconds (default 10); the
  port opens only at the end.
- ``no_listen``: logs the start-up, never opens the port, stays alive.
- ``empty_reply`` / ``hang`` / ``not_http``: the port accepts TCP but closes without a
  byte / never answers / speaks SSH.
- ``login_missing`` (comfyui): ComfyUI-Login failed to import (no bcrypt): no auth at
  all, ``/login`` is 404, the import summary shows ``(IMPORT FAILED)``.
- ``no_password`` (comfyui): first-login state whatever the PASSWORD file says.
- ``crash``: serves, then after ``--delay`` seconds (default 5) prints a traceback and
  exits with status 1.
- ``oom``: serves while allocating 16 MiB per 100 ms (capped by ``--oom-cap-mb``) so a
  container memory limit gets it OOM-killed.
- ``log_flood``: serves while writing ``--lines-per-second`` lines for ``--duration``
  seconds (forever by default; afterwards it keeps serving quietly).
- ``wrong_port``: listens on ``--port + 1``.
- ``open_api`` (comfyui): ComfyUI-Login loads (``/login`` page, token line) but the
  API answers without any token, as behind a reverse proxy that adds the Bearer header.

SIGTERM/SIGINT print ``Stopped server`` and exit 0 at once.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler
from typing import Protocol

from .comfyui import SERVER_HEADER, ComfyApp, crash_traceback
from .config import SimConfig, parse_args
from .console import Console
from .orchestrator import OrchestratorApp, StubApp
from .rawsock import MODES as RAW_MODES
from .rawsock import RawServer
from .scenarios import run_flood, run_oom
from .web import Request, Response, make_handler, start_http_server

BOOT_STEPS = 16


class SimApp(Protocol):
    """What the runner needs from a simulated service."""

    def boot(self) -> Iterator[tuple[str, str] | None]: ...

    def listening_lines(self, host: str, port: int) -> list[str]: ...

    def start_background(self) -> None: ...

    def handle(self, req: Request) -> Response: ...


def build_app(cfg: SimConfig, console: Console) -> SimApp:
    """Instantiate the service selected by ``--kind``."""
    if cfg.kind == "comfyui":
        return ComfyApp(cfg, console)
    if cfg.kind == "orchestrator":
        return OrchestratorApp(cfg, console)
    return StubApp(cfg, console)


def build_handler(cfg: SimConfig, app: SimApp, console: Console) -> type[BaseHTTPRequestHandler]:
    """aiohttp-like handler for ComfyUI (no access log); http.server-like otherwise."""
    if cfg.kind == "comfyui":
        return make_handler(app.handle, protocol="HTTP/1.1", server_header=SERVER_HEADER)
    methods = ("GET", "POST") if cfg.kind == "orchestrator" else ("GET", "HEAD", "POST")
    return make_handler(
        app.handle,
        protocol="HTTP/1.0",
        access_log=lambda line: console.log(line),
        methods=methods,
    )


def install_signal_handlers(console: Console) -> None:
    """Exit 0 on SIGTERM/SIGINT after ``Stopped server`` (no lock, no blocking write)."""

    def stop(signum: int, frame: object) -> None:
        console.emergency("\nStopped server\n")
        os._exit(0)

    # SIM_IGNORE_SIGTERM=1: behave like ComfyUI run as PID 1 with no init, which installs
    # no handler, so the kernel drops SIGTERM and `docker stop` ends in SIGKILL (137)
    ignore = os.environ.get("SIM_IGNORE_SIGTERM") == "1"
    signal.signal(signal.SIGTERM, signal.SIG_IGN if ignore else stop)
    signal.signal(signal.SIGINT, stop)


def sleep_forever() -> None:
    """Park the main thread; signal handlers still run between sleeps."""
    while True:
        time.sleep(3600)


def emit_boot(app: SimApp, console: Console, spread: float = 0.0) -> None:
    """Print start-up records, optionally spread over ``spread`` seconds.

    The generator is consumed lazily so side effects (the token read) happen when their
    line is due, as in a slow real start.
    """
    start = time.monotonic()
    for count, item in enumerate(app.boot(), 1):
        if item is not None:
            console.log(item[1], item[0])
        if spread > 0:
            pause = start + spread * min(count, BOOT_STEPS) / BOOT_STEPS - time.monotonic()
            if pause > 0:
                time.sleep(pause)
    if spread > 0:
        remaining = start + spread - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)


def run(cfg: SimConfig) -> int:
    """Run the simulator described by ``cfg`` (only returns on startup errors)."""
    console = Console(2 if cfg.stderr else 1, cfg.verbose)
    install_signal_handlers(console)
    app = build_app(cfg, console)
    scenario = cfg.scenario
    port = cfg.listen_port

    if scenario == "no_listen":
        emit_boot(app, console)
        sleep_forever()

    emit_boot(app, console, cfg.delay if scenario == "slow_start" else 0.0)

    try:
        if scenario in RAW_MODES:
            RawServer(cfg.host, port, scenario).start()
        else:
            start_http_server(cfg.host, port, build_handler(cfg, app, console))
    except OSError as exc:
        console.log(
            f"[Errno {exc.errno}] error while attempting to bind on address "
            f"('{cfg.host}', {port}): {exc.strerror}",
            "ERROR",
        )
        return 1
    app.start_background()
    for line in app.listening_lines(cfg.host, port):
        console.log(line)

    if scenario == "crash":
        time.sleep(max(cfg.delay, 0.0))
        tb = (
            crash_traceback(cfg.comfy_root)
            if cfg.kind == "comfyui"
            else (
                "Traceback (most recent call last):\n"
                '  File "/app/orchestrator.py", line 412, in <module>\n'
                "    server.serve_forever()\n"
                "RuntimeError: health monitor thread died unexpectedly\n"
            )
        )
        console.write(tb)
        os._exit(1)
    if scenario == "oom":
        blocks = run_oom(console, cfg.oom_cap_mb, cfg.oom_step_mb)
        console.log(f"Memory cap reached ({len(blocks) * cfg.oom_step_mb} MiB held); idle.")
        sleep_forever()
    if scenario == "log_flood":
        threading.Thread(
            target=run_flood,
            args=(console, cfg.lines_per_second, cfg.duration),
            daemon=True,
            name="flood",
        ).start()
    sleep_forever()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point for ``python -m genai_tui.sim``."""
    cfg = parse_args(argv)
    return run(cfg)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

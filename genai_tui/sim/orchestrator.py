"""The reference stack's deployed orchestrator (port 8090) and its model stubs.

The deployed orchestrator is a plain ``http.server`` app: ``/health`` always says
healthy, ``/status`` and ``/services`` report a monitor that probes each backend, and any
other path is ``404 {"error": "Endpoint not found"}``. Here the monitor really probes the
configured backends (any HTTP status, 401 included, counts as healthy), so genai-tui can
be tested against live state changes. ``/health`` gains a ``services`` map only when
``--backends`` is given, to keep the default reply identical to the reference.

The stubs (flux-1-dev, sd35, comfyui-workflows in the reference stack) answer ``/health``,
``/info`` and a fake ``/system_stats``; ``GET /`` is a 404 and ``HEAD /`` a bare 200.
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from .config import SimConfig
from .console import Console
from .web import Request, Response, json_response

PROBE_TIMEOUT = 2.0
ORCHESTRATOR_VERSION = "1.0.0"


def now_iso() -> str:
    """Local ISO timestamp like ``datetime.now().isoformat()`` in the reference code."""
    return datetime.now().isoformat()


@dataclass
class Backend:
    """Monitor state for one service."""

    name: str
    url: str
    status: str = "unknown"
    last_check: str | None = None
    error_count: int = 0
    last_error: str | None = None

    @property
    def port(self) -> int | None:
        try:
            parts = urlsplit(self.url)
            return parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return None


def probe(url: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """GET ``url`` without auth or proxies; ``None`` if any HTTP answer came back."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with opener.open(request, timeout=timeout) as resp:
            resp.read(1024)
    except urllib.error.HTTPError:
        return None
    except urllib.error.URLError as exc:
        return str(exc.reason)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return None


class OrchestratorApp:
    """Health/status endpoints plus a background monitor."""

    def __init__(self, cfg: SimConfig, console: Console) -> None:
        self.cfg = cfg
        self.console = console
        self.backends = [Backend(name, url) for name, url in cfg.backends]
        self.lock = threading.Lock()
        self.started = time.time()

    def boot(self) -> Iterator[tuple[str, str] | None]:
        """Start-up lines (the reference prints a short banner)."""
        yield "INFO", f"Starting {self.cfg.name} on {self.cfg.host}:{self.cfg.listen_port}"
        yield (
            "INFO",
            f"Monitoring {len(self.backends)} services: "
            + ", ".join(b.name for b in self.backends),
        )

    def listening_lines(self, host: str, port: int) -> list[str]:
        """Printed once the socket is bound."""
        return [f"Orchestrator listening on http://{host}:{port}"]

    def start_background(self) -> None:
        """Start the monitor thread."""
        threading.Thread(target=self._monitor, daemon=True, name="monitor").start()

    def _check(self, backend: Backend) -> None:
        error = probe(backend.url)
        with self.lock:
            backend.last_check = now_iso()
            if error is None:
                backend.status = "healthy"
            else:
                backend.status = "unhealthy"
                backend.error_count += 1
                backend.last_error = error
        if error is not None:
            self.console.log(f"Service {backend.name} indisponible: {error}", "WARNING")

    def _monitor(self) -> None:
        while True:
            threads = [
                threading.Thread(target=self._check, args=(b,), daemon=True) for b in self.backends
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(PROBE_TIMEOUT + 1)
            time.sleep(self.cfg.check_interval)

    def _services(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {
                b.name: {
                    "status": b.status,
                    "last_check": b.last_check,
                    "error_count": b.error_count,
                    "last_error": b.last_error,
                }
                for b in self.backends
            }

    def handle(self, req: Request) -> Response:
        """Route GET/POST like the reference ``BaseHTTPRequestHandler`` subclass."""
        path = req.path.rstrip("/") or "/"
        if req.method == "GET" and path == "/health":
            body: dict[str, Any] = {
                "status": "healthy",
                "service": "GenAI-Orchestrator",
                "timestamp": now_iso(),
            }
            if self.cfg.backends_explicit:
                body["services"] = {k: v["status"] for k, v in self._services().items()}
            return json_response(body)
        if req.method == "GET" and path == "/status":
            services = self._services()
            states = [s["status"] for s in services.values()]
            return json_response(
                {
                    "orchestrator": {
                        "status": "running",
                        "name": self.cfg.name,
                        "version": ORCHESTRATOR_VERSION,
                        "started_at": datetime.fromtimestamp(self.started).isoformat(),
                        "uptime_seconds": round(time.time() - self.started, 1),
                    },
                    "services": services,
                    "summary": {
                        "total_services": len(states),
                        "healthy_services": states.count("healthy"),
                        "unhealthy_services": states.count("unhealthy"),
                        "unknown_services": states.count("unknown"),
                    },
                }
            )
        if req.method == "GET" and path == "/services":
            with self.lock:
                services = {
                    b.name: {"name": b.name, "url": b.url, "port": b.port, "status": b.status}
                    for b in self.backends
                }
            return json_response({"services": services, "count": len(services)})
        parts = path.strip("/").split("/")
        if req.method == "GET" and len(parts) == 2 and parts[0] in ("start", "stop", "restart"):
            known = any(b.name == parts[1] for b in self.backends)
            if not known:
                return json_response({"error": f"Service {parts[1]} not found"}, 404)
            return json_response(
                {
                    "success": False,
                    "error": "Cannot connect to the Docker daemon at "
                    "unix:///var/run/docker.sock. Is the docker daemon running?",
                },
                500,
            )
        if req.method == "POST" and path == "/route_request":
            healthy = [k for k, v in self._services().items() if v["status"] == "healthy"]
            if not healthy:
                return json_response({"error": "No healthy service available"}, 503)
            return json_response({"success": True, "routed_to": healthy[0]})
        return json_response({"error": "Endpoint not found"}, 404)


class StubApp:
    """A model-service stub from the reference stack (not a real model server)."""

    def __init__(self, cfg: SimConfig, console: Console) -> None:
        self.cfg = cfg
        self.console = console

    def boot(self) -> Iterator[tuple[str, str] | None]:
        """One banner line."""
        yield "INFO", f"Stub service {self.cfg.name} starting on port {self.cfg.listen_port}"

    def listening_lines(self, host: str, port: int) -> list[str]:
        """Printed once the socket is bound."""
        return [f"Serving HTTP on {host} port {port} (http://{host}:{port}/) ..."]

    def start_background(self) -> None:
        """Stubs have no background work."""

    def handle(self, req: Request) -> Response:
        """``/health``, ``/info``, ``/system_stats``; ``HEAD`` anything is a bare 200."""
        if req.method == "HEAD":
            return Response(200)
        path = req.path.rstrip("/") or "/"
        if path == "/health":
            return json_response(
                {"status": "healthy", "service": self.cfg.name, "timestamp": now_iso()}
            )
        if path == "/info":
            return json_response(
                {"service": self.cfg.name, "type": "stub", "version": "0.1.0", "model": None}
            )
        if path == "/system_stats":
            return json_response(
                {"service": self.cfg.name, "gpu_memory": "8.2GB/12GB", "status": "stub"}
            )
        return json_response({"error": "Not found"}, 404)

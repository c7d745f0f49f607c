"""ComfyUI 0.3.64 + ComfyUI-Login simulator (stdlib only).

Reproduces what genai-tui probes and parses (see shared/reference/comfyui-login.md):

- start-up log lines in the real order, with ``For direct API calls, use token=<hash>``
  or the first-login ERROR line printed during custom-node import;
- ComfyUI-Login's middleware: exempt ``/login`` and ``*.css``/``*.css.map``/``*.js``/
  ``*.ico``; session cookie, then ``Authorization: Bearer <hash>``, then ``?token=``;
  302 to ``/login`` for browsers, 401 JSON otherwise; a malformed ``Authorization``
  header raises ``ValueError`` (500 + ``Error handling request`` + traceback);
- the token is read once at import and re-read on each request only while it is "",
  so editing PASSWORD on a running server changes nothing;
- ComfyUI's own origin check (403 for loopback Host with a foreign Origin), the ``/api``
  aliases, aiohttp's 404/405 texts, ``/prompt``, ``/system_stats``, ``/queue``,
  ``/history``, ``/free``, ``/interrupt``, ``/ws`` and a real queue (see below).

The queue follows ComfyUI's ``server.py`` / ``execution.py`` / ``main.py``: ``POST /prompt``
queues a job that one worker runs, printing ``got prompt``, the model load lines, a tqdm bar
(``\r``-rewritten, as samplers print it) and ``Prompt executed in``; a ``status`` frame
(``exec_info.queue_remaining``) goes to every websocket on every queue change, while
``execution_start``/``executing``/``progress``/``execution_success``/``execution_error`` go
only to the socket of the job's ``client_id`` (to every socket when it has none, as the
real server's ``send_sync(..., sid=None)`` does). A second socket with the same
``clientId`` takes the session over: the older one gets no frame any more. How a job
behaves is set per prompt in ``extra_data["sim"]`` (``{"seconds": 3, "steps": 20,
"fail": "oom"|"error", "stuck": true, "hang": 5}``) or for the generated jobs by
``--job-mode``: ``oom`` fails with ``torch.OutOfMemoryError`` (history ``status_str`` error,
``Got an OOM, unloading all loaded models.``), ``stuck`` prints the 0% bar and then
nothing until ``/interrupt``, ``hang`` blocks every HTTP answer while it runs (a node that
holds the event loop). ``--jobs-api`` turns the server into a newer ComfyUI with
``/api/jobs`` (``comfy_execution/jobs.py`` shapes) and ``extra_data.create_time``;
without it ``/api/jobs`` is a 404 like 0.3.64.

Limitation: bcrypt is not in the standard library, so ``POST /login`` cannot check a
password. With a PASSWORD file it always answers ``302 /login?wrong_password=1``; in the
first-login state it answers ``302 /`` with a session cookie that works for the rest of
the process, but writes no PASSWORD file (the real node would write the new hash).
"""

from __future__ import annotations

import base64
import hashlib
import html
import ipaddress
import json
import os
import random
import struct
import sys
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse, urlsplit

from .config import SimConfig
from .console import Console
from .web import Request, Response, json_response, text_response

COMFYUI_VERSION = "0.3.64"
FRONTEND_VERSION = "1.28.6"
TORCH_VERSION = "2.5.1+cu124"
DEVICE_NAME = "cuda:0 NVIDIA GeForce RTX 3090 : cudaMallocAsync"
VRAM_TOTAL = 25769803776
RAM_TOTAL = 64000 * 1024 * 1024
SERVER_HEADER = "Python/3.11 aiohttp/3.12.15"
LOGIN_NODE = "ComfyUI-Login"
EXEMPT_SUFFIXES = (".css", ".css.map", ".js", ".ico")
TOKEN_LINE = "For direct API calls, use token={}"
FIRST_LOGIN_ERROR = (
    "Please set up your password before use. "
    "The token will be a hashed string derived from your password."
)
AUTH_REQUIRED = {"error": "Authentication required."}
SESSION_COOKIE = "AIOHTTP_SESSION"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HISTORY = 10000
JOB_STEPS = 20
JOB_SECONDS = 1.2
#: job behaviours (``extra_data["sim"]`` keys and ``--job-mode`` values)
JOB_MODES = ("normal", "oom", "error", "stuck", "hang")
#: jobs API statuses (comfy_execution/jobs.py JobStatus)
JOB_STATUSES = ("pending", "in_progress", "completed", "failed", "cancelled")
OOM_MESSAGE = (
    "Allocation on device 0 would exceed allowed memory. (out of memory)\n"
    "Currently allocated     : 21.53 GiB\nRequested               : 1.27 GiB\n"
    "Device limit            : 23.64 GiB\nFree (according to CUDA): 0 bytes\n"
    "PyTorch limit (set by user-supplied memory fraction)\n"
    "                        : 17179869184.00 GiB"
)


class SimulatedError(Exception):
    """An exception whose logged traceback imitates the real server's frames."""

    def __init__(self, traceback_text: str) -> None:
        super().__init__(traceback_text.rstrip().splitlines()[-1])
        self.traceback_text = traceback_text


def _site(root: str) -> str:
    return f"{root}/venv/lib/python3.11/site-packages"


def login_value_error(root: str, parts: int) -> SimulatedError:
    """The traceback aiohttp logs when ComfyUI-Login unpacks a malformed header."""
    if parts < 2:
        msg = f"not enough values to unpack (expected 2, got {parts})"
    else:
        msg = "too many values to unpack (expected 2)"
    site = _site(root)
    return SimulatedError(
        "Traceback (most recent call last):\n"
        f'  File "{site}/aiohttp/web_protocol.py", line 510, in _handle_request\n'
        "    resp = await request_handler(request)\n"
        f'  File "{site}/aiohttp/web_app.py", line 569, in _handle\n'
        "    return await handler(request)\n"
        f'  File "{root}/custom_nodes/{LOGIN_NODE}/password.py", line 186, '
        "in check_login_status\n"
        "    auth_type, token_from_header = authorization_header.split()\n"
        f"ValueError: {msg}"
    )


def simple_error(root: str, where: str, code: str, exc_line: str) -> SimulatedError:
    """A short traceback ending in ``server.py`` for errors raised by route handlers."""
    site = _site(root)
    return SimulatedError(
        "Traceback (most recent call last):\n"
        f'  File "{site}/aiohttp/web_protocol.py", line 510, in _handle_request\n'
        "    resp = await request_handler(request)\n"
        f'  File "{root}/server.py", line 0, in {where}\n'
        f"    {code}\n"
        f"{exc_line}"
    )


def login_import_traceback(root: str) -> str:
    """What ComfyUI prints when ComfyUI-Login fails to import (no bcrypt)."""
    node = f"{root}/custom_nodes/{LOGIN_NODE}"
    return (
        "Traceback (most recent call last):\n"
        f'  File "{root}/nodes.py", line 2131, in load_custom_node\n'
        "    module_spec.loader.exec_module(module)\n"
        '  File "<frozen importlib._bootstrap_external>", line 940, in exec_module\n'
        '  File "<frozen importlib._bootstrap>", line 241, in _call_with_frames_removed\n'
        f'  File "{node}/__init__.py", line 1, in <module>\n'
        "    from .password import *\n"
        f'  File "{node}/password.py", line 11, in <module>\n'
        "    import bcrypt\n"
        "ModuleNotFoundError: No module named 'bcrypt'\n"
    )


def crash_traceback(root: str) -> str:
    """A fatal error that kills ComfyUI's main loop (used by the ``crash`` scenario)."""
    return (
        "Traceback (most recent call last):\n"
        f'  File "{root}/main.py", line 363, in <module>\n'
        "    event_loop.run_until_complete(start_all())\n"
        '  File "/usr/local/lib/python3.11/asyncio/base_events.py", line 653, '
        "in run_until_complete\n"
        "    return future.result()\n"
        f'  File "{root}/execution.py", line 642, in execute\n'
        "    comfy.model_management.soft_empty_cache()\n"
        "RuntimeError: CUDA error: an illegal memory access was encountered\n"
        "CUDA kernel errors might be asynchronously reported at some other API call, "
        "so the stacktrace below might be incorrect.\n"
        "For debugging consider passing CUDA_LAUNCH_BLOCKING=1\n"
        "Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.\n"
    )


def tqdm_bar(n: int, total: int, elapsed: float) -> str:
    """One tqdm-style progress-bar frame, e.g. `` 45%|████▌     | 9/20 [00:01<00:01, ...]``."""
    frac = n / total if total else 1.0
    filled = frac * 10
    full = int(filled)
    bar = "█" * full
    if full < 10:
        partial = int((filled - full) * 8)
        bar += " ▏▎▍▌▋▊▉"[partial]
    bar = bar.ljust(10)
    rate = n / elapsed if elapsed > 0 and n else 0.0
    remaining = (total - n) / rate if rate else 0.0

    def mmss(sec: float) -> str:
        sec = int(sec)
        return f"{sec // 60:02d}:{sec % 60:02d}"

    if n == 0:
        tail = f"[{mmss(elapsed)}<?, ?it/s]"
    else:
        tail = f"[{mmss(elapsed)}<{mmss(remaining)}, {rate:5.2f}it/s]"
    return f"{frac * 100:3.0f}%|{bar}| {n}/{total} {tail}"


def default_workflow(seed: int) -> dict[str, Any]:
    """A tiny text-to-image graph used for fake jobs."""
    return {
        "3": {
            "class_type": "KSampler",
            "inputs": {"seed": seed, "steps": JOB_STEPS, "cfg": 7, "model": ["4", 0]},
        },
        "4": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"},
        },
        "9": {
            "class_type": "SaveImage",
            "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]},
        },
    }


def is_loopback(host: str | None) -> bool:
    """Loopback test of ComfyUI's origin middleware, without DNS lookups."""
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost" or host.endswith(".localhost")


class LoginNode:
    """The module-level state of ComfyUI-Login (``TOKEN``, ``user_cache``, sessions)."""

    def __init__(self, console: Console, password_path: str, ignore_file: bool) -> None:
        self.console = console
        self.path = password_path
        self.ignore_file = ignore_file
        self.token = ""
        self.user_cache: dict[str, Any] = {}
        self.sessions: set[str] = set()
        self.lock = threading.Lock()

    def exists(self) -> bool:
        """``os.path.exists(password_path)``, checked live like the real login page."""
        return not self.ignore_file and os.path.exists(self.path)

    def load_token(self) -> None:
        """Read line 1 of PASSWORD (stripped) and log it, or log the first-login ERROR."""
        with self.lock:
            try:
                if self.ignore_file:
                    raise FileNotFoundError(self.path)
                with open(self.path, encoding="utf-8", errors="replace") as fh:
                    self.token = fh.readline().strip()
            except OSError:
                self.token = ""
                self.console.log(FIRST_LOGIN_ERROR, "ERROR")
                return
            self.console.log(TOKEN_LINE.format(self.token))

    def import_node(self) -> None:
        """Side effects of importing ``password.py``: login dir, legacy move, token."""
        directory = os.path.dirname(self.path)
        if directory and not os.path.exists(directory):
            self.console.log("Password directory does not exists, creating...")
            try:
                os.makedirs(directory)
            except OSError:
                pass
        if os.path.basename(directory) == "login" and not self.ignore_file:
            legacy = os.path.join(os.path.dirname(directory), "PASSWORD")
            if os.path.isfile(legacy):
                try:
                    os.rename(legacy, self.path)
                except OSError:
                    pass
        self.load_token()

    def username(self) -> str | None:
        """``get_user_data()``: line 2 of PASSWORD, cached after the first read."""
        if "username" in self.user_cache:
            return self.user_cache["username"]
        try:
            with open(self.path, "rb") as fh:
                data = fh.read().split(b"\n")
        except OSError:
            return None
        name = data[1].decode("utf-8", "replace").strip() if len(data) > 1 else ""
        self.user_cache["username"] = name or None
        return self.user_cache["username"]


@dataclass
class Job:
    """One queued prompt: ``[number, prompt_id, prompt, extra_data, outputs]``."""

    number: int
    prompt_id: str
    prompt: Any
    extra_data: dict[str, Any]
    outputs: list[str]
    interrupted: bool = field(default=False)
    behaviour: dict[str, Any] = field(default_factory=dict)

    def as_list(self) -> list[Any]:
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]

    @property
    def client_id(self) -> str | None:
        value = self.extra_data.get("client_id")
        return value if isinstance(value, str) and value else None


class WsClient:
    """One open websocket: frames from the worker and the handler thread, serialised."""

    def __init__(self, sid: str, wfile: Any, conn: Any = None) -> None:
        self.sid = sid
        self.wfile = wfile
        self.conn = conn
        self.lock = threading.Lock()
        self.alive = True

    def send(self, message: dict[str, Any]) -> None:
        data = ws_frame(0x1, json.dumps(message).encode())
        with self.lock:
            if not self.alive:
                return
            try:
                self.wfile.write(data)
                self.wfile.flush()
            except OSError:
                self.alive = False


class ComfyApp:
    """The simulated ComfyUI server: state, log lines and the request pipeline."""

    def __init__(self, cfg: SimConfig, console: Console) -> None:
        self.cfg = cfg
        self.console = console
        self.root = cfg.comfy_root
        self.login_loaded = cfg.scenario != "login_missing"
        #: ``open_api``: the node loads (page, token line) but its middleware lets every
        #: request through, as behind a proxy that injects the Bearer header
        self.enforce = cfg.scenario != "open_api"
        self.login = LoginNode(console, cfg.password_file, cfg.scenario == "no_password")
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.pending: deque[Job] = deque()
        self.running: Job | None = None
        self.history: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.number = 0
        self.image_counter = 0
        self.model_loaded = False
        self.free_requested = False
        self.started = time.time()
        #: open websockets by client id (a reused id replaces the older socket)
        self.sockets: dict[str, WsClient] = {}
        #: HTTP answers wait while a ``hang`` job holds the "event loop"
        self.hang_until = 0.0
        self.jobs_api = bool(getattr(cfg, "jobs_api", False))
        self.worker = threading.Thread(target=self._worker, daemon=True, name="prompt-worker")
        self.get_routes: dict[str, Callable[[Request], Response]] = {
            "/": self.r_index,
            "/ws": self.r_ws,
            "/prompt": self.r_get_prompt,
            "/system_stats": self.r_system_stats,
            "/queue": self.r_get_queue,
            "/history": self.r_get_history,
            "/object_info": self.r_object_info,
            "/embeddings": lambda req: json_response([]),
            "/models": lambda req: json_response(
                ["checkpoints", "loras", "vae", "text_encoders", "diffusion_models"]
            ),
            "/extensions": lambda req: json_response([]),
        }
        self.post_routes: dict[str, Callable[[Request], Response]] = {
            "/prompt": self.r_post_prompt,
            "/queue": self.r_post_queue,
            "/interrupt": self.r_interrupt,
            "/free": self.r_free,
            "/history": self.r_post_history,
        }
        if self.jobs_api:
            self.get_routes["/jobs"] = self.r_jobs
            self.post_routes["/jobs/cancel"] = self.r_jobs_cancel
        if self.login_loaded:
            self.get_routes["/login"] = self.r_login_page
            self.get_routes["/logout"] = self.r_logout
            self.post_routes["/login"] = self.r_login_post

    # ----------------------------------------------------------------- start-up log
    def boot(self) -> Iterator[tuple[str, str] | None]:
        """Start-up records in ComfyUI's order; ``None`` marks a step that logged itself."""
        root = self.root
        yield "INFO", "Checkpoint files will always be loaded safely."
        yield "INFO", f"Total VRAM {VRAM_TOTAL / 1024 / 1024:0.0f} MB, total RAM 64000 MB"
        yield "INFO", f"pytorch version: {TORCH_VERSION}"
        yield "INFO", "Set vram state to: NORMAL_VRAM"
        yield "INFO", f"Device: {DEVICE_NAME}"
        yield "INFO", "Using pytorch attention"
        yield "INFO", f"Python version: {sys.version}"
        yield "INFO", f"ComfyUI version: {COMFYUI_VERSION}"
        yield "INFO", f"ComfyUI frontend version: {FRONTEND_VERSION}"
        yield "INFO", (f"[Prompt Server] web root: {_site(root)}/comfyui_frontend_package/static")
        node = f"{root}/custom_nodes/{LOGIN_NODE}"
        if self.login_loaded:
            self.login.import_node()
            yield None
            login_row = f"{0.1:6.1f} seconds: {node}"
        else:
            yield "WARNING", login_import_traceback(root)
            yield (
                "WARNING",
                (f"Cannot import {node} module for custom nodes: No module named 'bcrypt'"),
            )
            login_row = f"{0.0:6.1f} seconds (IMPORT FAILED): {node}"
        yield "INFO", ""
        yield "INFO", "Import times for custom nodes:"
        yield "INFO", f"{0.0:6.1f} seconds: {root}/custom_nodes/websocket_image_save.py"
        yield "INFO", login_row
        yield "INFO", ""
        yield "INFO", "Starting server\n"

    def listening_lines(self, host: str, port: int) -> list[str]:
        """``To see the GUI go to:`` with the address really bound."""
        shown = f"[{host}]" if ":" in host else host
        return [f"To see the GUI go to: http://{shown}:{port}"]

    def start_background(self) -> None:
        """Prompt worker, plus the periodic job generator when ``--jobs-every`` is set."""
        self.worker.start()
        if self.cfg.jobs_every and self.cfg.jobs_every > 0:
            threading.Thread(target=self._job_generator, daemon=True, name="jobs").start()

    # ----------------------------------------------------------------- pipeline
    def handle(self, req: Request) -> Response:
        """Middlewares (origin/CORS, then Login) and routing, with aiohttp's 500."""
        while time.time() < self.hang_until:  # a node holds the event loop: no answer
            time.sleep(0.05)
        try:
            if self.cfg.cors is None:
                denied = self._origin_only(req)
                if denied is not None:
                    return denied
            if req.method == "OPTIONS":
                resp = Response(200, b"", "application/octet-stream")
            elif self.login_loaded and self.enforce:
                resp = self._login_middleware(req)
            else:
                resp = self._route(req)
            if self.cfg.cors is not None and resp.status not in (302, 500):
                resp.headers += [
                    ("Access-Control-Allow-Origin", self.cfg.cors),
                    ("Access-Control-Allow-Methods", "POST, GET, DELETE, PUT, OPTIONS"),
                    ("Access-Control-Allow-Headers", "Content-Type, Authorization"),
                    ("Access-Control-Allow-Credentials", "true"),
                ]
            return resp
        except SimulatedError as exc:
            self.console.log("Error handling request\n" + exc.traceback_text.rstrip(), "ERROR")
        except Exception as exc:  # a bug in the simulator: still answer like aiohttp
            import traceback

            text = "".join(traceback.format_exception(exc))
            self.console.log("Error handling request\n" + text.rstrip(), "ERROR")
        if "text/html" in (req.header("Accept") or ""):
            resp = text_response(
                "<html><head><title>500 Internal Server Error</title></head><body>"
                "<h1>500 Internal Server Error</h1>Server got itself in trouble</body></html>",
                500,
                "text/html",
            )
        else:
            resp = text_response("500 Internal Server Error\n\nServer got itself in trouble", 500)
        resp.close = True
        return resp

    def _origin_only(self, req: Request) -> Response | None:
        host = req.header("Host")
        origin = req.header("Origin")
        if host is None or origin is None:
            return None
        host_domain: str | None = host.lower()
        parsed = urlparse(origin)
        origin_domain: str | None = parsed.netloc.lower()
        host_parsed = urlsplit("//" + (host_domain or ""))
        try:
            origin_port, host_port = parsed.port, host_parsed.port
        except ValueError:
            return None
        loopback = is_loopback(host_parsed.hostname)
        if origin_port is None:
            host_domain = host_parsed.hostname
        if host_port is None:
            origin_domain = parsed.hostname
        if loopback and host_domain and origin_domain and host_domain != origin_domain:
            self.console.log(
                "WARNING: request with non matching host and origin "
                f"{host_domain} != {origin_domain}, returning 403",
                "WARNING",
            )
            return Response(403, b"", "application/octet-stream")
        return None

    def _session_ok(self, req: Request) -> bool:
        raw = req.header("Cookie")
        if not raw or not self.login.sessions:
            return False
        try:
            cookie = SimpleCookie(raw)
        except CookieError:
            return False
        morsel = cookie.get(SESSION_COOKIE)
        return morsel is not None and morsel.value in self.login.sessions

    def _login_middleware(self, req: Request) -> Response:
        path = req.path
        if path == "/login" or path.endswith(EXEMPT_SUFFIXES):
            return self._route(req)
        if self.login.token == "":
            self.login.load_token()
        if self._session_ok(req):
            return self._route(req)
        cors = self.cfg.cors
        if cors is None or cors == "*" or cors == req.header("Origin"):
            authorization = req.header("Authorization")
            if authorization:
                parts = authorization.split()
                if len(parts) != 2:
                    raise login_value_error(self.root, len(parts))
                auth_type, token = parts
                if auth_type == "Bearer" and token == self.login.token:
                    return self._route(req)
            if req.arg("token") == self.login.token:
                return self._route(req)
        if "text/html" in (req.header("Accept") or ""):
            return self._found("/login")
        return json_response(AUTH_REQUIRED, 401)

    @staticmethod
    def _found(location: str, headers: list[tuple[str, str]] | None = None) -> Response:
        resp = text_response("302: Found", 302)
        resp.headers = [("Location", location), *(headers or [])]
        return resp

    def _route(self, req: Request) -> Response:
        path = req.path
        if path.startswith("/api/"):
            path = path[4:]
        method = "GET" if req.method == "HEAD" else req.method
        table = self.get_routes if method == "GET" else self.post_routes
        handler = table.get(path) if method in ("GET", "POST") else None
        if handler is None and method == "GET":
            if path.startswith("/history/"):
                handler = self.r_history_item
            elif path.startswith("/object_info/"):
                handler = self.r_object_info
            elif self.jobs_api and path.startswith("/jobs/"):
                handler = self.r_job_item
        if handler is None and method == "POST" and self.jobs_api and path.startswith(
                "/jobs/") and path.endswith("/cancel"):
            handler = self.r_job_cancel
        if path.startswith("/jobs") and not req.path.startswith("/api/"):
            handler = None  # the jobs API exists only under /api/
        if handler is not None:
            return handler(req)
        if method == "GET":
            return text_response("404: Not Found", 404)
        allowed = {"GET", "HEAD"}
        if path in self.post_routes:
            allowed.add("POST")
        resp = text_response("405: Method Not Allowed", 405)
        resp.headers.append(("Allow", ",".join(sorted(allowed))))
        return resp

    # ----------------------------------------------------------------- routes
    def r_index(self, req: Request) -> Response:
        body = (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="UTF-8">\n'
            "<title>ComfyUI</title>\n"
            '<script type="module" crossorigin src="./assets/index.js"></script>\n'
            '</head>\n<body class="litegraph grid">\n<div id="vue-app"></div>\n'
            "</body>\n</html>\n"
        )
        resp = Response(200, body.encode(), "text/html")
        resp.headers += [("Cache-Control", "no-cache"), ("Pragma", "no-cache"), ("Expires", "0")]
        return resp

    def queue_remaining(self) -> int:
        with self.lock:
            return len(self.pending) + (1 if self.running else 0)

    def r_get_prompt(self, req: Request) -> Response:
        return json_response({"exec_info": {"queue_remaining": self.queue_remaining()}})

    def device_stats(self) -> dict[str, Any]:
        """Plausible, slowly varying VRAM numbers (bytes) driven by the fake model state."""
        mib = 1024 * 1024
        with self.lock:
            loaded, busy = self.model_loaded, self.running is not None
        torch_total = (5632 + (2048 if busy else 0)) * mib if loaded else 0
        torch_allocated = (4897 + (1536 if busy else 0)) * mib if loaded else 0
        jitter = random.randint(0, 48) * mib
        torch_free = max(torch_total - torch_allocated - jitter // 4, 0)
        vram_free = VRAM_TOTAL - 412 * mib - torch_total - jitter
        return {
            "name": DEVICE_NAME,
            "type": "cuda",
            "index": 0,
            "vram_total": VRAM_TOTAL,
            "vram_free": vram_free,
            "torch_vram_total": torch_total,
            "torch_vram_free": torch_free,
        }

    def r_system_stats(self, req: Request) -> Response:
        mib = 1024 * 1024
        argv = ["main.py", "--listen", self.cfg.host, "--port", str(self.cfg.listen_port)]
        if self.cfg.cors is not None:
            argv.append("--enable-cors-header")
            if self.cfg.cors != "*":
                argv.append(self.cfg.cors)
        return json_response(
            {
                "system": {
                    "os": os.name,
                    "ram_total": RAM_TOTAL,
                    "ram_free": RAM_TOTAL - (21504 + random.randint(0, 512)) * mib,
                    "comfyui_version": COMFYUI_VERSION,
                    "required_frontend_version": FRONTEND_VERSION,
                    "installed_templates_version": "0.1.94",
                    "required_templates_version": "0.1.94",
                    "python_version": sys.version,
                    "pytorch_version": TORCH_VERSION,
                    "embedded_python": False,
                    "argv": argv,
                },
                "devices": [self.device_stats()],
            }
        )

    def r_get_queue(self, req: Request) -> Response:
        with self.lock:
            running = [self.running.as_list()] if self.running else []
            pending = [job.as_list() for job in self.pending]
        return json_response({"queue_running": running, "queue_pending": pending})

    def r_get_history(self, req: Request) -> Response:
        raw = req.arg("max_items")
        with self.lock:
            items = list(self.history.items())
        if raw is not None:
            try:
                count = int(raw)
            except ValueError:
                raise simple_error(
                    self.root,
                    "get_history",
                    "max_items = int(max_items)",
                    f"ValueError: invalid literal for int() with base 10: {raw!r}",
                ) from None
            items = items[max(len(items) - count, 0) :] if count >= 0 else items[:count]
        return json_response(dict(items))

    def r_history_item(self, req: Request) -> Response:
        prompt_id = req.path.rsplit("/", 1)[-1]
        with self.lock:
            entry = self.history.get(prompt_id)
        return json_response({prompt_id: entry} if entry is not None else {})

    def r_object_info(self, req: Request) -> Response:
        return json_response({})

    def _json_body(self, req: Request, where: str) -> Any:
        try:
            return json.loads(req.body.decode("utf-8") or "null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise simple_error(
                self.root,
                where,
                "json_data = await request.json()",
                f"json.decoder.JSONDecodeError: {exc}",
            ) from None

    def r_post_prompt(self, req: Request) -> Response:
        self.console.log("got prompt")
        data = self._json_body(req, "post_prompt")
        if not isinstance(data, dict):
            raise simple_error(
                self.root,
                "post_prompt",
                "json_data = self.trigger_on_prompt(json_data)",
                "TypeError: argument of type 'NoneType' is not iterable",
            )
        if "prompt" not in data:
            return json_response({"error": "no prompt", "node_errors": []}, 400)
        prompt = data["prompt"]
        if not isinstance(prompt, dict) or not prompt:
            error = {
                "type": "prompt_no_outputs",
                "message": "Prompt has no outputs",
                "details": "",
                "extra_info": {},
            }
            self.console.log(f"invalid prompt: {error}", "WARNING")
            return json_response({"error": error, "node_errors": []}, 400)
        extra = data.get("extra_data") if isinstance(data.get("extra_data"), dict) else {}
        if "client_id" in data:
            extra["client_id"] = data["client_id"]
        job = self.submit(prompt, extra)
        return json_response({"prompt_id": job.prompt_id, "number": job.number, "node_errors": {}})

    def r_post_queue(self, req: Request) -> Response:
        data = self._json_body(req, "post_queue") or {}
        with self.lock:
            before = len(self.pending)
            if data.get("clear"):
                self.pending.clear()
            for pid in data.get("delete", []) or []:
                self.pending = deque(j for j in self.pending if j.prompt_id != pid)
            changed = len(self.pending) != before
        if changed:
            self.queue_updated()
        return Response(200, b"", "application/octet-stream")

    def r_interrupt(self, req: Request) -> Response:
        data = self._json_body(req, "post_interrupt") if req.body else None
        wanted = data.get("prompt_id") if isinstance(data, dict) else None
        with self.lock:
            job = self.running
            if job is not None and (wanted is None or wanted == job.prompt_id):
                job.interrupted = True
        return Response(200, b"", "application/octet-stream")

    def r_free(self, req: Request) -> Response:
        """Like ComfyUI: a flag the queue worker acts on when it next runs (at once when
        idle, after the running job otherwise); it never interrupts a job."""
        data = self._json_body(req, "post_free") or {}
        if data.get("unload_models") or data.get("free_memory"):
            with self.cond:
                self.free_requested = True
                idle = self.running is None
                self.cond.notify()
            if idle:
                self._apply_free()
        return Response(200, b"", "application/octet-stream")

    def _apply_free(self) -> None:
        with self.lock:
            unload = self.free_requested and self.model_loaded and self.running is None
            if self.running is None:
                self.free_requested = False
            if unload:
                self.model_loaded = False
        if unload:
            self.console.log("1 models unloaded.")

    def r_post_history(self, req: Request) -> Response:
        data = self._json_body(req, "post_history") or {}
        with self.lock:
            if data.get("clear"):
                self.history.clear()
            for pid in data.get("delete", []) or []:
                self.history.pop(pid, None)
        return Response(200, b"", "application/octet-stream")

    # ----------------------------------------------------------------- login routes
    def login_page(self, wrong_password: bool) -> str:
        """HTML of the login page (own markup, same user-visible sentences)."""
        first_time = not self.login.exists()
        username = None if first_time else self.login.username()
        notes = []
        if wrong_password:
            notes.append("<p>Wrong Password.</p>")
        if username is None and not first_time:
            notes.append("<p>Please also set a username.</p>")
        if first_time:
            notes.append("<p>For your first login, please enter a new username and password.</p>")
        else:
            notes.append(f"<p>Welcome back, {html.escape(str(username))}!</p>")
        user_field = ""
        if first_time or username is None:
            user_field = '<label>Username:</label><input type="text" name="username" required><br>'
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="UTF-8">\n'
            "<title>ComfyUI Login</title>\n</head>\n<body>\n"
            '<div class="title">ComfyUI Login</div>\n'
            f'<div id="feedback">{"".join(notes)}</div>\n'
            f'<form action="/login" method="post">{user_field}'
            '<label>Password:</label><input type="password" name="password" required>'
            '<input type="submit" value="Login"></form>\n</body>\n</html>\n'
        )

    def r_login_page(self, req: Request) -> Response:
        if self._session_ok(req):
            return self._found("/")
        return text_response(self.login_page(bool(req.arg("wrong_password"))), 200, "text/html")

    def r_login_post(self, req: Request) -> Response:
        form = parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True)
        if not form.get("password"):
            raise simple_error(
                self.root,
                "login_handler",
                "password_input = data.get('password').encode('utf-8')",
                "AttributeError: 'NoneType' object has no attribute 'encode'",
            )
        if self.login.exists():
            # bcrypt.checkpw is not available in the standard library: always "wrong".
            return self._found("/login?wrong_password=1")
        session = uuid.uuid4().hex
        with self.login.lock:
            self.login.sessions.add(session)
        cookie = f"{SESSION_COOKIE}={session}; HttpOnly; Path=/"
        return self._found("/", [("Set-Cookie", cookie)])

    def r_logout(self, req: Request) -> Response:
        raw = req.header("Cookie") or ""
        try:
            morsel = SimpleCookie(raw).get(SESSION_COOKIE)
        except CookieError:
            morsel = None
        if morsel is not None:
            with self.login.lock:
                self.login.sessions.discard(morsel.value)
        return self._found("/login")

    # ----------------------------------------------------------------- websocket
    def r_ws(self, req: Request) -> Response:
        key = req.header("Sec-WebSocket-Key")
        upgrade = (req.header("Upgrade") or "").lower()
        if upgrade != "websocket" or not key:
            return text_response(
                f"400: No WebSocket UPGRADE hdr: {req.header('Upgrade')}\n "
                'Can "Upgrade" only to "WebSocket".',
                400,
            )
        sid = req.arg("clientId") or uuid.uuid4().hex
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()

        def session(handler: BaseHTTPRequestHandler) -> None:
            head = (
                "HTTP/1.1 101 Switching Protocols\r\n"
                "Upgrade: websocket\r\nConnection: upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept}\r\n"
                f"Date: {handler.date_time_string()}\r\nServer: {SERVER_HEADER}\r\n\r\n"
            )
            client = WsClient(sid, handler.wfile, handler.connection)
            try:
                handler.connection.settimeout(None)
                with client.lock:
                    # registered before its first frame, as ComfyUI does: a queue change
                    # the client makes on reading it is broadcast to it too (queued
                    # behind this lock); "Reusing existing session, remove old": the
                    # older socket stays open but gets no frame any more
                    with self.lock:
                        self.sockets[sid] = client
                    status = {
                        "type": "status",
                        "data": {
                            "status": {"exec_info": {
                                "queue_remaining": self.queue_remaining()}},
                            "sid": sid,
                        },
                    }
                    handler.wfile.write(head.encode() + ws_frame(0x1, json.dumps(status).encode()))
                    handler.wfile.flush()
                ws_idle(handler, client.lock)
            except OSError:
                pass
            finally:
                client.alive = False
                with self.lock:
                    if self.sockets.get(sid) is client:
                        del self.sockets[sid]

        return Response(101, websocket=session)

    def ws_clients(self) -> list[WsClient]:
        with self.lock:
            return list(self.sockets.values())

    def send_ws(self, event: str, data: dict[str, Any], sid: str | None = None) -> None:
        """``send_sync``: to the socket ``sid``, or to every socket when ``sid`` is None."""
        message = {"type": event, "data": data}
        with self.lock:
            targets = list(self.sockets.values()) if sid is None else (
                [self.sockets[sid]] if sid in self.sockets else [])
        for client in targets:
            client.send(message)

    def queue_updated(self) -> None:
        """``PromptServer.queue_updated``: a status frame to every socket."""
        self.send_ws("status", {"status": {"exec_info": {
            "queue_remaining": self.queue_remaining()}}})

    # ----------------------------------------------------------------- jobs API
    def _queue_lists(self) -> tuple[list[Any], list[Any], dict[str, Any]]:
        with self.lock:
            running = [self.running.as_list()] if self.running else []
            pending = [job.as_list() for job in self.pending]
            history = dict(self.history)
        return running, pending, history

    @staticmethod
    def _job_from_queue(item: list[Any], status: str) -> dict[str, Any]:
        number, prompt_id, _prompt, extra, _outputs = item
        job = {"id": prompt_id, "status": status, "priority": number,
               "create_time": extra.get("create_time"), "outputs_count": 0,
               "previewable_outputs_count": 0}
        return {k: v for k, v in job.items() if v is not None}

    @staticmethod
    def _job_from_history(prompt_id: str, entry: dict[str, Any]) -> dict[str, Any]:
        number, _, _prompt, extra, _ = entry["prompt"]
        status_info = entry.get("status") or {}
        start = end = error = None
        interrupted = False
        for name, data in status_info.get("messages", []):
            if name == "execution_start":
                start = data.get("timestamp")
            elif name in ("execution_success", "execution_error", "execution_interrupted"):
                end = data.get("timestamp")
                if name == "execution_error":
                    error = data
                elif name == "execution_interrupted":
                    interrupted = True
        if status_info.get("status_str") == "error":
            status = "cancelled" if interrupted else "failed"
        else:
            status = "completed"
        count = sum(len(v.get("images", [])) for v in entry.get("outputs", {}).values())
        job = {"id": prompt_id, "status": status, "priority": number,
               "create_time": extra.get("create_time"), "execution_start_time": start,
               "execution_end_time": end, "execution_error": error,
               "outputs_count": count, "previewable_outputs_count": count}
        return {k: v for k, v in job.items() if v is not None}

    def r_jobs(self, req: Request) -> Response:
        """``GET /api/jobs``: filter, sort by create_time (desc by default), paginate."""
        raw = req.arg("status")
        wanted = list(JOB_STATUSES)
        if raw:
            wanted = [x.strip().lower() for x in raw.split(",") if x.strip()]
            bad = [x for x in wanted if x not in JOB_STATUSES]
            if bad:
                return json_response({"error": f"Invalid status value(s): {', '.join(bad)}. "
                                      f"Valid values: {', '.join(JOB_STATUSES)}"}, 400)
        order = (req.arg("sort_order") or "desc").lower()
        if order not in ("asc", "desc"):
            return json_response({"error": "sort_order must be 'asc' or 'desc'"}, 400)
        limit: int | None = None
        if req.arg("limit") is not None:
            try:
                limit = int(req.arg("limit") or "")
            except ValueError:
                return json_response({"error": "limit must be an integer"}, 400)
            if limit <= 0:
                return json_response({"error": "limit must be a positive integer"}, 400)
        try:
            offset = max(int(req.arg("offset") or 0), 0)
        except ValueError:
            return json_response({"error": "offset must be an integer"}, 400)
        running, pending, history = self._queue_lists()
        jobs: list[dict[str, Any]] = []
        if "in_progress" in wanted:
            jobs += [self._job_from_queue(i, "in_progress") for i in running]
        if "pending" in wanted:
            jobs += [self._job_from_queue(i, "pending") for i in pending]
        for pid, entry in history.items():
            job = self._job_from_history(pid, entry)
            if job["status"] in wanted:
                jobs.append(job)
        jobs.sort(key=lambda j: j.get("create_time", 0), reverse=order == "desc")
        total = len(jobs)
        jobs = jobs[offset:]
        if limit is not None:
            jobs = jobs[:limit]
        return json_response({"jobs": jobs, "pagination": {
            "offset": offset, "limit": limit, "total": total,
            "has_more": offset + len(jobs) < total}})

    def r_job_item(self, req: Request) -> Response:
        job_id = req.path.rsplit("/", 1)[-1]
        running, pending, history = self._queue_lists()
        if job_id in history:
            return json_response(self._job_from_history(job_id, history[job_id]))
        for items, status in ((running, "in_progress"), (pending, "pending")):
            for item in items:
                if item[1] == job_id:
                    return json_response(self._job_from_queue(item, status))
        return json_response({"error": "Job not found"}, 404)

    def _cancel(self, job_id: str) -> bool:
        with self.lock:
            if self.running is not None and self.running.prompt_id == job_id:
                self.running.interrupted = True
                return True
            before = len(self.pending)
            self.pending = deque(j for j in self.pending if j.prompt_id != job_id)
            removed = len(self.pending) != before
        if removed:
            self.queue_updated()
        return removed

    def r_job_cancel(self, req: Request) -> Response:
        job_id = req.path.rsplit("/", 2)[-2]
        return json_response({"cancelled": self._cancel(job_id)})

    def r_jobs_cancel(self, req: Request) -> Response:
        data = self._json_body(req, "cancel_jobs_batch")
        ids = data.get("job_ids") if isinstance(data, dict) else None
        if not isinstance(ids, list):
            return json_response({"error": "job_ids must be a list"}, 400)
        cancelled = False
        for job_id in ids:
            if isinstance(job_id, str) and self._cancel(job_id):
                cancelled = True
        return json_response({"cancelled": cancelled})

    # ----------------------------------------------------------------- jobs
    def submit(self, prompt: Any, extra: dict[str, Any] | None = None) -> Job:
        """Queue a job (the worker thread runs it and records history)."""
        extra = dict(extra or {})
        behaviour = extra.get("sim") if isinstance(extra.get("sim"), dict) else {}
        if self.jobs_api:
            extra["create_time"] = int(time.time() * 1000)
        with self.cond:
            number = self.number
            self.number += 1
            outputs = [k for k, v in prompt.items() if _is_output(v)] or list(prompt)[-1:]
            job = Job(number, str(uuid.uuid4()), prompt, extra, outputs,
                      behaviour=dict(behaviour))
            self.pending.append(job)
            self.cond.notify()
        self.queue_updated()
        return job

    def _job_generator(self) -> None:
        assert self.cfg.jobs_every
        mode = getattr(self.cfg, "job_mode", "normal") or "normal"
        while True:
            time.sleep(self.cfg.jobs_every)
            self.console.log("got prompt")
            extra: dict[str, Any] = {"client_id": "genai-sim"}
            if mode != "normal":
                extra["sim"] = {"fail": mode} if mode in ("oom", "error") else {mode: (
                    True if mode == "stuck" else 5.0)}
            self.submit(default_workflow(random.randint(0, 2**48)), extra)

    def _worker(self) -> None:
        while True:
            with self.cond:
                while not self.pending:
                    if self.free_requested and self.running is None:
                        break
                    self.cond.wait()
                if not self.pending:
                    job = None
                else:
                    job = self.pending.popleft()
                    self.running = job
                    load = not self.model_loaded
                    self.model_loaded = True
            if job is None:
                self._apply_free()
                continue
            self.queue_updated()
            try:
                self._execute(job, load)
            finally:
                with self.lock:
                    self.running = None
                self.queue_updated()
                self._apply_free()

    def _number(self, job: Job, key: str, default: float) -> float:
        value = job.behaviour.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            return float(value)
        return default

    def _execute(self, job: Job, load: bool) -> None:
        start = time.monotonic()
        started_ms = int(time.time() * 1000)
        pid = job.prompt_id
        sid = job.client_id
        behaviour = job.behaviour
        steps = max(1, int(self._number(job, "steps", JOB_STEPS)))
        seconds = self._number(job, "seconds", float(getattr(self.cfg, "job_seconds", None)
                                                     or JOB_SECONDS))
        fail = behaviour.get("fail") if behaviour.get("fail") in ("oom", "error") else None
        stuck = bool(behaviour.get("stuck"))
        hang = self._number(job, "hang", 0.0)
        nodes = list(job.prompt) if isinstance(job.prompt, dict) else []
        sampler = next((k for k in nodes if isinstance(job.prompt[k], dict)
                        and job.prompt[k].get("class_type") == "KSampler"),
                       nodes[0] if nodes else "3")
        self.send_ws("execution_start", {"prompt_id": pid, "timestamp": started_ms}, sid)
        self.send_ws("execution_cached", {"nodes": [], "prompt_id": pid,
                                          "timestamp": started_ms}, sid)
        if hang:
            self.hang_until = time.time() + hang
        if load:
            self.console.log("Requested to load SDXL")
            self.console.log("loaded completely 21456.4 4897.0483474731445 True")
        for node in nodes:
            if node == sampler:
                break
            self.send_ws("executing", {"node": node, "display_node": node, "prompt_id": pid}, sid)
        self.send_ws("executing", {"node": sampler, "display_node": sampler, "prompt_id": pid},
                     sid)
        self.console.write("\r" + tqdm_bar(0, steps, 0.0))
        bar_start = time.monotonic()
        failed_at: int | None = None
        if stuck:
            while not job.interrupted:  # no step ever ends: no bar, no frame, no line
                time.sleep(0.05)
        else:
            for step in range(1, steps + 1):
                time.sleep(seconds / steps)
                if job.interrupted:
                    break
                if fail and step > steps // 4:
                    failed_at = step
                    break
                self.console.write("\r" + tqdm_bar(step, steps, time.monotonic() - bar_start))
                self.send_ws("progress", {"value": step, "max": steps, "prompt_id": pid,
                                          "node": sampler}, sid)
        self.console.write("\n")
        now_ms = int(time.time() * 1000)
        messages: list[list[Any]] = [
            ["execution_start", {"prompt_id": pid, "timestamp": started_ms}],
            ["execution_cached", {"nodes": [], "prompt_id": pid, "timestamp": started_ms}],
        ]
        outputs: dict[str, Any] = {}
        meta: dict[str, Any] = {}
        if failed_at is not None:
            exc_type, exc_message = (
                ("torch.OutOfMemoryError", OOM_MESSAGE) if fail == "oom"
                else ("RuntimeError", "mat1 and mat2 shapes cannot be multiplied (77x768 and "
                      "1024x320)"))
            trace = [
                f'  File "{self.root}/execution.py", line 496, in execute\n',
                "    output_data, output_ui, has_subgraph, has_pending_tasks = "
                "await get_output_data(\n",
                f'  File "{self.root}/comfy/samplers.py", line 1040, in sample\n',
                "    return sampler.sample(...)\n",
            ]
            first = exc_message.split("\n", 1)[0]
            self.console.log(f"!!! Exception during processing !!! {first}", "ERROR")
            self.console.log("Traceback (most recent call last):\n" + "".join(trace)
                             + f"{exc_type}: {exc_message}", "ERROR")
            if fail == "oom":
                self.console.log("Got an OOM, unloading all loaded models.")
                with self.lock:
                    self.model_loaded = False
            error = {"prompt_id": pid, "node_id": sampler, "node_type": "KSampler",
                     "executed": [], "exception_message": exc_message,
                     "exception_type": exc_type, "traceback": trace,
                     "current_inputs": {}, "current_outputs": {}, "timestamp": now_ms}
            self.send_ws("execution_error", error, sid)
            messages.append(["execution_error", error])
            status = {"status_str": "error", "completed": False, "messages": messages}
        elif job.interrupted:
            self.console.log("Processing interrupted")
            data = {"prompt_id": pid, "node_id": sampler, "node_type": "KSampler",
                    "executed": [], "timestamp": now_ms}
            self.send_ws("execution_interrupted", data, sid)
            messages.append(["execution_interrupted", data])
            status = {"status_str": "error", "completed": False, "messages": messages}
        else:
            for node in nodes[nodes.index(sampler) + 1:] if sampler in nodes else []:
                self.send_ws("executing", {"node": node, "display_node": node,
                                           "prompt_id": pid}, sid)
            messages.append(["execution_success", {"prompt_id": pid, "timestamp": now_ms}])
            status = {"status_str": "success", "completed": True, "messages": messages}
            for node in job.outputs:
                self.image_counter += 1
                outputs[node] = {
                    "images": [
                        {
                            "filename": f"ComfyUI_{self.image_counter:05d}_.png",
                            "subfolder": "",
                            "type": "output",
                        }
                    ]
                }
                meta[node] = {
                    "node_id": node,
                    "display_node": node,
                    "parent_node": None,
                    "real_node_id": node,
                }
            self.send_ws("execution_success", {"prompt_id": pid, "timestamp": now_ms}, sid)
        self.send_ws("executing", {"node": None, "prompt_id": pid}, sid)
        elapsed = time.monotonic() - start
        self.console.log(f"Prompt executed in {elapsed:.2f} seconds")
        with self.lock:
            self.history[pid] = {
                "prompt": job.as_list(),
                "outputs": outputs,
                "status": status,
                "meta": meta,
            }
            while len(self.history) > MAX_HISTORY:
                self.history.popitem(last=False)


def _is_output(node: Any) -> bool:
    return isinstance(node, dict) and node.get("class_type") in (
        "SaveImage",
        "PreviewImage",
        "SaveAnimatedWEBP",
        "SaveVideo",
    )


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """An unmasked server-to-client WebSocket frame."""
    head = bytes([0x80 | opcode])
    size = len(payload)
    if size < 126:
        head += bytes([size])
    elif size < 65536:
        head += bytes([126]) + struct.pack(">H", size)
    else:
        head += bytes([127]) + struct.pack(">Q", size)
    return head + payload


def ws_idle(handler: BaseHTTPRequestHandler, lock: threading.Lock | None = None) -> None:
    """Read client frames until close: answer ping with pong and close with close."""
    rfile, wfile = handler.rfile, handler.wfile
    lock = lock or threading.Lock()
    while True:
        head = rfile.read(2)
        if len(head) < 2:
            return
        opcode = head[0] & 0x0F
        masked = head[1] & 0x80
        size = head[1] & 0x7F
        if size == 126:
            size = struct.unpack(">H", rfile.read(2))[0]
        elif size == 127:
            size = struct.unpack(">Q", rfile.read(8))[0]
        mask = rfile.read(4) if masked else b""
        payload = rfile.read(size)
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        if opcode == 0x8:
            with lock:
                wfile.write(ws_frame(0x8, payload[:2]))
                wfile.flush()
            return
        if opcode == 0x9:
            with lock:
                wfile.write(ws_frame(0xA, payload))
                wfile.flush()

"""What genai-tui may ask a ComfyUI to do with its queue (issue #14): interrupt the running
job, cancel pending ones, clear the queue, free VRAM, and read `/system_stats` around it.

Headless (no Textual), synchronous and bounded: every request has the probes' connect and
read timeouts and one overall deadline, no redirects, no proxy variables, no cookie jar.
The token goes into the `Authorization: Bearer` header only (the one form ComfyUI-Login
accepts without a 500: never a bare `Authorization: <hash>`, never `?token=` in a URL).
Errors are classified by exception class (`probes.classify_error`), never from httpx's
message, and every text that leaves this module passes `safety.one_line` with any bcrypt
hash and the token itself redacted.
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from genai_tui.config import ProbeConfig, ServiceConfig
from genai_tui.sources.probes import classify_error, device_vram, display_url, sanitize

#: answers are read up to this size (a `/system_stats` is ~1 KiB)
MAX_BODY = 256 * 1024
#: a token we put in a header: printable ASCII, no whitespace (as the probes)
_HEADER_SAFE = re.compile(r"^[\x21-\x7e]{1,512}$")
#: a prompt id we put in a path or a body: ComfyUI's are uuid4 strings
_PROMPT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class ControlError(Exception):
    """A request failed; the message is one clean line with no token in it."""


@dataclass(frozen=True)
class VramStats:
    """One device's memory as `/system_stats` reports it (bytes)."""

    total: int
    free: int
    torch_total: int | None = None  # what torch holds in its cache (models, tensors)

    @property
    def used(self) -> int:
        return max(0, self.total - self.free)


def usable_token(token: str | None) -> str | None:
    """The token as it may go into a header, else None (sent without one)."""
    token = (token or "").strip()
    return token if _HEADER_SAFE.match(token) else None


def valid_prompt_id(prompt_id: str) -> bool:
    """Whether an id is safe to put in a URL path or a body (ComfyUI's are uuids)."""
    return bool(_PROMPT_ID.match(prompt_id or ""))


class JobControl:
    """The queue actions for one ComfyUI service (one short-lived client per call)."""

    def __init__(self, service: ServiceConfig, token: str | None,
                 probes: ProbeConfig | None = None) -> None:
        self.service = service
        self._token = usable_token(token)
        self.probes = probes or ProbeConfig()
        self.base = display_url(service.url)  # no userinfo, no query: never the token

    def __repr__(self) -> str:  # never the token
        return f"JobControl({self.service.name!r}, {self.base!r})"

    # ------------------------------------------------------------ requests

    def _clean(self, text: object, limit: int = 160) -> str:
        return sanitize(text, limit, secret=self._token)

    def _request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        """One request; raises ControlError with a shown-safe reason."""
        headers = {"Accept": "application/json", "Accept-Encoding": "identity",
                   "User-Agent": "genai-tui"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        content = None
        if body is not None:
            content = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        t = self.probes
        deadline = t.connect_timeout + t.read_timeout
        where = path.split("?", 1)[0]
        started = time.monotonic()
        try:
            with httpx.Client(trust_env=False, follow_redirects=False,
                              timeout=httpx.Timeout(t.read_timeout, connect=t.connect_timeout),
                              limits=httpx.Limits(max_keepalive_connections=0)) as client:
                client.cookies.jar.set_policy(_NO_COOKIES)
                with client.stream(method, self.base + path, headers=headers,
                                   content=content) as resp:
                    data = b""
                    for chunk in resp.iter_raw():
                        data += chunk
                        if len(data) > MAX_BODY:
                            raise ControlError(f"{where}: answer over {MAX_BODY} bytes")
                        if time.monotonic() - started > deadline:
                            raise ControlError(f"{where}: no complete answer within "
                                               f"{deadline:g}s")
                    status = resp.status_code
        except ControlError:
            raise
        except Exception as exc:
            _outcome, detail = classify_error(exc, t)
            raise ControlError(self._clean(f"{where}: {detail}")) from None
        if status == 401:
            raise ControlError(f"{where}: 401 (the token on disk was refused)")
        if not 200 <= status < 300:
            raise ControlError(f"{where}: HTTP {status}")
        return status, data

    def _post(self, path: str, body: Any) -> bytes:
        return self._request("POST", path, body)[1]

    def _get_json(self, path: str) -> Any:
        data = self._request("GET", path)[1]
        try:
            return json.loads(data.decode("utf-8", "replace") or "null")
        except ValueError:
            raise ControlError(f"{path.split('?', 1)[0]}: not JSON") from None

    # ------------------------------------------------------------ actions

    def interrupt(self, prompt_id: str, api: str = "queue") -> None:
        """Stop the running job `prompt_id` (only that one: a job that started meanwhile is
        left alone): the jobs API's cancel, else `POST /interrupt {"prompt_id": id}`."""
        self._check_ids([prompt_id])
        if api == "jobs":
            self._post(f"/api/jobs/{quote(prompt_id, safe='')}/cancel", {})
        else:
            self._post("/interrupt", {"prompt_id": prompt_id})

    def cancel(self, prompt_ids: list[str], api: str = "queue") -> None:
        """Take pending jobs off the queue: `POST /queue {"delete": [...]}` (or the jobs
        API's batch cancel)."""
        self._check_ids(prompt_ids)
        if api == "jobs":
            self._post("/api/jobs/cancel", {"job_ids": list(prompt_ids)})
        else:
            self._post("/queue", {"delete": list(prompt_ids)})

    def clear(self) -> None:
        """Empty the pending queue (`POST /queue {"clear": true}`); the running job goes on."""
        self._post("/queue", {"clear": True})

    def free(self) -> None:
        """`POST /free {"unload_models": true, "free_memory": true}`: the queue worker
        unloads the models when it next runs (at once when idle); never interrupts a job."""
        self._post("/free", {"unload_models": True, "free_memory": True})

    def stats(self) -> VramStats | None:
        """The first device of `/system_stats` (None when it reports none usable)."""
        return parse_vram(self._get_json("/system_stats"))

    def queue_ids(self) -> tuple[list[str], list[str]]:
        """(running, pending) prompt ids from `GET /queue` (ids only, never the graph)."""
        doc = self._get_json("/queue")
        out: list[list[str]] = []
        for key in ("queue_running", "queue_pending"):
            items = doc.get(key) if isinstance(doc, dict) else None
            ids = []
            for item in items if isinstance(items, list) else []:
                if isinstance(item, list) and len(item) > 1 and isinstance(item[1], str):
                    ids.append(item[1])
            out.append(ids)
        return out[0], out[1]

    def _check_ids(self, ids: list[str]) -> None:
        if not ids:
            raise ControlError("no job given")
        for pid in ids:
            if not valid_prompt_id(pid):
                raise ControlError("not a ComfyUI prompt id: " + self._clean(pid, 40))


def parse_vram(doc: Any) -> VramStats | None:
    """`devices[0]` of a `/system_stats` answer, each number type-checked and bounded
    (`probes.device_vram`)."""
    total, free, torch_total = device_vram(doc)
    if total is None or free is None:
        return None
    return VramStats(int(total), int(free),
                     int(torch_total) if torch_total is not None else None)


#: a cookie policy that stores nothing (a session cookie must never stand in for the token)
_NO_COOKIES = http.cookiejar.DefaultCookiePolicy(allowed_domains=[])

"""The simulator's ``open_api`` scenario: ComfyUI-Login is loaded (its page answers, the
token line is logged) yet the API answers without a token, which is what genai-tui sees
through a reverse proxy that adds the Bearer header itself. That state is `auth_disabled`
(auth is expected, the Login node is there, and still anyone gets in), as opposed to
`login_not_loaded` (``login_missing``: /login is a 404 and the import failed)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.unit.test_sim import HASH, TOKEN_RE, Sim, bearer, free_port, request, write_password


def test_open_api_serves_login_page_but_no_token_needed(tmp_path: Path) -> None:
    write_password(tmp_path)
    port = free_port()
    sim = Sim(["--port", str(port), "--host", "127.0.0.1", "--scenario", "open_api"], tmp_path)
    try:
        sim.wait_listening(port)
        assert sim.wait_for("To see the GUI go to:")
        status, _, body = request(port, "/login")
        assert status == 200 and b"Welcome back" in body
        status, _, body = request(port, "/prompt", {"Accept": "application/json"})
        assert status == 200 and json.loads(body) == {"exec_info": {"queue_remaining": 0}}
        assert request(port, "/system_stats")[0] == 200
        assert request(port, "/prompt", bearer())[0] == 200
        assert [m.group(1) for m in TOKEN_RE.finditer(sim.text)] == [HASH]
        assert "IMPORT FAILED" not in sim.text
    finally:
        sim.stop()

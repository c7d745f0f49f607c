"""`genai-tui restart|unpause|jobs …` (issue #16) against the ComfyUI simulator running
in-process on a loopback port: each queue action changes the server's queue (asserted
over HTTP), `--readonly` before or after the subcommand refuses with exit 4 and the queue
is unchanged, an unknown service is one clean line naming the configured ones (exit 3),
`--json` is one document of the documented shape, and no piece of the hash is printed."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from genai_tui import cli
from genai_tui.safety import is_clean
from genai_tui.sim.inproc import InProcessComfy
from tests.unit.test_sim_jobs import HASH, call, password_file, submit, wait_until

HOSTILE = "evil\x1b]0;pwned\x07\x1b[2Jname"


def config_for(root: Path, url: str, *, container: str = "gtact-flux-absent") -> Path:
    """A stack of one ComfyUI (`flux`) and one non-ComfyUI service (`qwen`); the hash in
    a canonical hash_file, as the Bearer header's source."""
    (root / "secrets").mkdir(exist_ok=True)
    hash_file = root / "secrets" / "api.token"
    hash_file.write_text(HASH + "\n")
    hash_file.chmod(0o600)
    path = root / "genai-tui.toml"
    path.write_text(f"""
[history]
enabled = false

[probes]
connect_timeout = 1.0
read_timeout = 2.0

[[services]]
name = "flux"
url = "{url}"
kind = "comfyui"
container = "{container}"

[[services]]
name = "qwen"
url = "http://127.0.0.1:25999"
kind = "http"
container = "gtact-qwen-absent"

[tokens]
canonical = "api"
backup_dir = "{root / 'backups'}"
audit_log = "{root / 'audit.jsonl'}"

[[tokens.locations]]
name = "api"
path = "{hash_file}"
format = "hash_file"
""")
    return path


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Callable[..., tuple[InProcessComfy, Path]]]:
    sims: list[InProcessComfy] = []

    def start(*, jobs_api: bool = False) -> tuple[InProcessComfy, Path]:
        sim = InProcessComfy(password_file(tmp_path), jobs_api=jobs_api, job_seconds=1.0)
        sims.append(sim)
        return sim, config_for(tmp_path, sim.url)

    yield start
    for sim in sims:
        sim.close()


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    assert HASH[7:] not in out + err and not any(
        HASH[i:i + 8] in out + err for i in range(7, len(HASH) - 7))
    return code, out, err


def queue(sim: InProcessComfy) -> tuple[list[str], list[str]]:
    doc = call(sim, "/queue")[1]
    return ([i[1] for i in doc["queue_running"]], [i[1] for i in doc["queue_pending"]])


def busy(sim: InProcessComfy) -> tuple[str, str]:
    """A stuck running job and one pending behind it."""
    stuck = submit(sim, {"stuck": True})
    waiting = submit(sim, {"seconds": 30})
    wait_until(lambda: queue(sim)[0] == [stuck])
    return stuck, waiting


# ---------------------------------------------------------------- the queue actions


@pytest.mark.parametrize("jobs_api", [False, True], ids=["queue+history", "jobs-api"])
def test_interrupt_stops_the_running_job_and_the_next_one_runs(stack, capsys,
                                                               jobs_api: bool) -> None:
    sim, cfg = stack(jobs_api=jobs_api)
    stuck, waiting = busy(sim)
    code, out, err = run(capsys, "--config", str(cfg), "jobs", "interrupt", "flux")
    assert code == 0, err
    assert out.strip() == f"flux: interrupt sent for job {stuck[:8]}"
    wait_until(lambda: queue(sim)[0] == [waiting])


def test_interrupt_with_a_prompt_id_that_no_longer_runs_touches_nothing(stack,
                                                                       capsys) -> None:
    sim, cfg = stack()
    stuck, waiting = busy(sim)
    other = "0" * 8 + "-0000-4000-8000-" + "0" * 12
    code, out, _ = run(capsys, "--config", str(cfg), "jobs", "interrupt", "flux",
                       "--prompt", other, "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["action"] == "interrupt" and doc["ok"] is True
    assert queue(sim) == ([stuck], [waiting])


def test_interrupt_with_nothing_running_fails_in_one_line(stack, capsys) -> None:
    _, cfg = stack()
    code, out, err = run(capsys, "--config", str(cfg), "jobs", "interrupt", "flux")
    assert code == 1 and out == ""
    assert err.strip() == "flux: no job running to interrupt"


def test_cancel_and_clear_change_the_servers_queue(stack, capsys) -> None:
    sim, cfg = stack()
    stuck, waiting = busy(sim)
    third = submit(sim)
    code, out, _ = run(capsys, "--config", str(cfg), "jobs", "cancel", "flux", waiting)
    assert code == 0 and out.strip() == f"flux: job {waiting[:8]} taken off the queue"
    assert queue(sim) == ([stuck], [third])
    submit(sim)
    code, out, _ = run(capsys, "--config", str(cfg), "jobs", "clear", "flux", "--json")
    assert code == 0
    assert json.loads(out) == {"action": "clear", "ok": True, "results": [
        {"service": "flux", "ok": True, "detail": "flux: pending queue cleared"}]}
    assert queue(sim) == ([stuck], [])


def test_free_says_what_it_did(stack, capsys) -> None:
    _, cfg = stack()
    code, out, _ = run(capsys, "--config", str(cfg), "jobs", "free", "flux", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["action"] == "free_vram" and doc["ok"] is True
    (r,) = doc["results"]
    assert r["service"] == "flux" and "VRAM" in r["detail"] and "freed" in r


def test_status_json_is_one_document_with_the_running_job(stack, capsys) -> None:
    sim, cfg = stack()
    stuck, waiting = busy(sim)
    code, out, _ = run(capsys, "jobs", "status", "--config", str(cfg), "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["action"] == "jobs_status" and doc["ok"] is True
    (r,) = doc["results"]  # only the ComfyUI: qwen has no queue
    assert set(r) == {"service", "ok", "detail", "jobs"}
    assert r["service"] == "flux" and r["detail"].startswith("jobs flux: running")
    assert r["jobs"]["running"]["prompt_id"] == stuck
    assert [j["prompt_id"] for j in r["jobs"]["pending"]] == [waiting]


def test_status_is_allowed_in_readonly_mode_and_reads_only(stack, capsys) -> None:
    sim, cfg = stack()
    stuck, waiting = busy(sim)
    code, out, _ = run(capsys, "--readonly", "--config", str(cfg), "jobs", "status", "flux")
    assert code == 0 and out.startswith("jobs flux: running")
    assert queue(sim) == ([stuck], [waiting])


def test_status_of_an_unreachable_server_fails_with_the_reason(tmp_path, capsys) -> None:
    cfg = config_for(tmp_path, "http://127.0.0.1:25998")
    code, out, _ = run(capsys, "--config", str(cfg), "jobs", "status", "--json")
    doc = json.loads(out)
    assert code == 1 and doc["ok"] is False
    assert doc["results"][0]["ok"] is False and "unknown" in doc["results"][0]["detail"]


def test_a_queue_action_on_a_service_that_is_not_a_comfyui(stack, capsys) -> None:
    _, cfg = stack()
    code, out, err = run(capsys, "--config", str(cfg), "jobs", "clear", "qwen")
    assert code == 1 and err.strip() == "qwen: not a ComfyUI service"


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize("words,label", [
    (["restart", "flux"], "restart"), (["unpause", "flux"], "unpause"),
    (["jobs", "interrupt", "flux"], "jobs interrupt"),
    (["jobs", "cancel", "flux", "x"], "jobs cancel"),
    (["jobs", "clear", "flux"], "jobs clear"), (["jobs", "free", "flux"], "jobs free")])
@pytest.mark.parametrize("where", ["before", "after"])
def test_readonly_refuses_before_doing_anything(stack, capsys, words, label,
                                                where) -> None:
    sim, cfg = stack()
    stuck, waiting = busy(sim)
    args = (["--readonly", "--config", str(cfg), *words] if where == "before"
            else ["--config", str(cfg), *words, "--readonly"])
    code, out, err = run(capsys, *args)
    assert code == 4 and out == ""
    assert err == f"genai-tui: read-only mode: {label} is disabled\n"
    assert queue(sim) == ([stuck], [waiting])


def test_readonly_refusal_with_json_is_one_document(stack, capsys) -> None:
    _, cfg = stack()
    code, out, _ = run(capsys, "--config", str(cfg), "restart", "flux", "--readonly",
                       "--json")
    assert code == 4
    assert json.loads(out) == {"action": "restart", "ok": False, "results": [],
                               "error": "read-only mode: restart is disabled"}


@pytest.mark.parametrize("words", [["restart", "flux", "nope"], ["unpause", "nope"],
                                   ["jobs", "interrupt", "nope"], ["jobs", "status", "nope"]])
def test_an_unknown_service_is_one_line_naming_the_configured_ones(stack, capsys,
                                                                   words) -> None:
    _, cfg = stack()
    code, out, err = run(capsys, "--config", str(cfg), *words)
    assert code == 3 and out == ""
    assert err == "genai-tui: unknown service 'nope' (configured: flux, qwen)\n"


def test_a_hostile_service_name_is_shown_clean(tmp_path, capsys) -> None:
    cfg = config_for(tmp_path, "http://127.0.0.1:25997")
    code, out, err = run(capsys, "--config", str(cfg), "restart", HOSTILE, "--json")
    assert code == 3
    assert is_clean(err.rstrip("\n")) and "\x1b" not in out
    assert "evil" in err and json.loads(out)["ok"] is False


def test_restart_of_a_missing_container_fails_with_the_reason(tmp_path, capsys) -> None:
    """Whatever the engine (reachable or not), the container is not there: exit 1, the
    reason on one line per service."""
    cfg = config_for(tmp_path, "http://127.0.0.1:25996")
    code, out, _ = run(capsys, "--config", str(cfg), "restart", "flux", "--json")
    doc = json.loads(out)
    assert code == 1 and doc["action"] == "restart" and doc["ok"] is False
    (r,) = doc["results"]
    assert r["service"] == "flux" and r["ok"] is False and r["detail"]
    assert is_clean(r["detail"])

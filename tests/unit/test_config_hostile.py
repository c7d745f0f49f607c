"""Hostile configs: a value taken from `${VAR}` never appears in an error, a malformed file
is one line and exit 3 (never a traceback), and a FIFO, device or huge file never hangs."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genai_tui import config

SECRET = "hunter2-secret"

BASE = """
[[services]]
name = "comfyui-qwen"
url = "http://127.0.0.1:8188"
kind = "comfyui"
auth = true

[[services]]
name = "orchestrator"
url = "http://127.0.0.1:${ORCH_PORT:-8193}/"
kind = "orchestrator"

[tokens]
canonical = "secrets"
restart_after_unify = ["comfyui-qwen"]
[[tokens.locations]]
name = "secrets"
path = ".secrets/qwen-api-user.token"
format = "hash_file"
[[tokens.locations]]
name = "env"
path = ".env"
format = "env"
key = "COMFYUI_API_TOKEN"

[host]
disks = ["/"]

[probes]
interval = 5
"""


def cli(*args: str, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """The real entry point, with no token variables inherited from this shell."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("COMFYUI_", "GENAI_TUI_", "ORCH_"))}
    env["HOME"] = str(cwd)
    return subprocess.run([sys.executable, "-m", "genai_tui", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env=env)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *parts: str) -> None:
    assert proc.returncode == 3, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("genai-tui: bad config: "), proc.stderr
    for part in parts:
        assert part in proc.stderr, (part, proc.stderr)


def secret_env(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"COMFYUI_RAW_TOKEN={SECRET}\nOTHER=x\n")


# ------------------------------------------------------------------ item 3: no secret echoed


def test_cli_url_typo_names_the_variable_not_the_secret(tmp_path):
    """Item 3: `url = "${COMFYUI_RAW_TOKEN}"` must not print the password from the .env."""
    secret_env(tmp_path)
    path = tmp_path / "genai-tui.toml"
    path.write_text(BASE.replace('"http://127.0.0.1:8188"', '"${COMFYUI_RAW_TOKEN}"'))
    for args in (["check"], ["check", "--json"], ["tokens", "status"]):
        proc = cli("--config", str(path), *args, cwd=tmp_path)
        assert SECRET not in proc.stdout + proc.stderr
        assert_one_line_error(proc, str(path), "services[0].url", "${COMFYUI_RAW_TOKEN}",
                              "http(s)://")


V = "${COMFYUI_RAW_TOKEN}"
INTERPOLATED = [
    ("url", [('"http://127.0.0.1:8188"', f'"{V}"')], "services[0].url"),
    ("url with host", [('"http://127.0.0.1:8188"', f'"http://h:{V}"')], "services[0].url"),
    ("kind", [('kind = "comfyui"', f'kind = "{V}"')], "services[0].kind"),
    ("runtime", [('kind = "comfyui"', f'runtime = "{V}"')], "services[0].runtime"),
    ("format", [('format = "hash_file"', f'format = "{V}"')], "tokens.locations[0].format"),
    ("canonical", [('canonical = "secrets"', f'canonical = "{V}"')], "tokens.canonical"),
    ("restart list", [('["comfyui-qwen"]', f'["{V}"]')], "tokens.restart_after_unify"),
    ("duplicate service", [('name = "orchestrator"', f'name = "{V}"'),
                           ('name = "comfyui-qwen"', f'name = "{V}"')], "services[1].name"),
    ("duplicate location", [('name = "env"', f'name = "{V}"'),
                            ('name = "secrets"', f'name = "{V}"'),
                            ('canonical = "secrets"', f'canonical = "{V}"')],
     "tokens.locations[1].name"),
    ("health path", [('kind = "comfyui"', f'health_path = "{V}"')], "services[0].health_path"),
    ("home path", [('path = ".secrets/qwen-api-user.token"', f'path = "~{V}/x"')],
     "tokens.locations[0].path"),
]


@pytest.mark.parametrize("label,changes,where", INTERPOLATED, ids=[c[0] for c in INTERPOLATED])
def test_errors_about_interpolated_values_name_the_variable(tmp_path, label, changes, where):
    """Item 3: whatever field is wrong, a value from `${VAR}` is named, never quoted."""
    secret_env(tmp_path)
    text = BASE
    for old, new in changes:
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "genai-tui.toml"
    path.write_text(text)
    with pytest.raises(config.ConfigError) as err:
        config.load_file(path, env={})
    message = str(err.value)
    assert SECRET not in message and "hunter2" not in message
    assert V in message and where in message, message
    # the real environment counts too
    with pytest.raises(config.ConfigError) as err:
        config.load_file(path, env={"COMFYUI_RAW_TOKEN": "from-the-environment"})
    assert "from-the-environment" not in str(err.value) and V in str(err.value)


def test_built_in_defaults_name_the_variable_of_a_bad_port(tmp_path):
    """Items 3 and 9: with no config, a `.env` port that is not a port is a ConfigError
    naming the variable (it used to surface later as a ValueError traceback)."""
    (tmp_path / ".env").write_text(f"COMFYUI_PORT={SECRET}\n")
    with pytest.raises(config.ConfigError) as err:
        config.load(env={"HOME": str(tmp_path)}, cwd=tmp_path)
    assert SECRET not in str(err.value) and "${COMFYUI_PORT" in str(err.value)
    assert "comfyui-qwen" in str(err.value)
    proc = cli("check", cwd=tmp_path)
    assert SECRET not in proc.stdout + proc.stderr
    assert_one_line_error(proc, "${COMFYUI_PORT", "http(s)://")


def test_literal_values_are_still_quoted(tmp_path):
    """Item 3: a value written literally in the TOML is still shown, to help fix it."""
    path = tmp_path / "genai-tui.toml"
    path.write_text(BASE.replace('kind = "comfyui"', 'kind = "comfyiu"'))
    with pytest.raises(config.ConfigError, match=r"unknown value 'comfyiu'"):
        config.load_file(path, env={})


# ------------------------------------------------------------------ escapes in messages

ESCAPES = [
    ("literal url", BASE.replace('"http://127.0.0.1:8188"', '"\\u001b[31mhttp"'),
     "services[0].url"),
    ("unknown key", BASE + '\n"\\u001b]0;pwned\\u0007" = 1\n', "unknown key"),
    ("unknown service key", BASE.replace("auth = true", 'auth = true\n"\\u001b[2J" = 1'),
     "unknown key"),
    ("duplicate name", BASE.replace('name = "orchestrator"', 'name = "a\\u001b[31m"')
     .replace('name = "comfyui-qwen"', 'name = "a\\u001b[31m"'), "duplicate service name"),
    ("bidi kind", BASE.replace('kind = "comfyui"', 'kind = "\\u202ecomfyui"'),
     "services[0].kind"),
]


@pytest.mark.parametrize("label,text,expected", ESCAPES, ids=[e[0] for e in ESCAPES])
def test_control_characters_in_errors_are_escaped(tmp_path, label, text, expected):
    """An escape sequence in the config never reaches the terminal through an error."""
    path = tmp_path / "genai-tui.toml"
    path.write_text(text)
    proc = cli("--config", str(path), "check", cwd=tmp_path)
    assert_one_line_error(proc, str(path), expected)
    assert "\x1b" not in proc.stderr and "\x07" not in proc.stderr
    assert "\u202e" not in proc.stderr


def test_control_characters_in_the_config_file_name_are_escaped(tmp_path):
    path = tmp_path / "bad\x1b[31m.toml"
    path.write_text("[[services]\n")
    with pytest.raises(config.ConfigError) as err:
        config.load_file(path, env={})
    assert "\x1b" not in str(err.value) and "TOML syntax error" in str(err.value)


# ------------------------------------------------------------------ item 9: no tracebacks

DEEP_ARRAY = "x = " + "[" * 2000 + "]" * 2000 + "\n"
DEEP_TABLE = "x = " + "{a = " * 2000 + "1" + "}" * 2000 + "\n"

HOSTILE = [
    ("NUL in location path", BASE.replace(".secrets/qwen-api-user.token", "x\\u0000y"),
     ["tokens.locations[0].path", "NUL"]),
    ("NUL in disk", BASE.replace('disks = ["/"]', 'disks = ["/a\\u0000b"]'),
     ["host.disks[0]", "NUL"]),
    ("NUL in log file", BASE.replace("auth = true", 'auth = true\nlog_file = "a\\u0000"'),
     ["services[0].log_file", "NUL"]),
    ("NUL in url", BASE.replace('"http://127.0.0.1:8188"', '"http://a\\u0000b"'),
     ["services[0].url"]),
    ("unknown user", BASE.replace(".secrets/qwen-api-user.token", "~nosuchuser-zz/x"),
     ["tokens.locations[0].path", "~nosuchuser-zz"]),
    ("unknown user backup", BASE.replace("[tokens]\n", '[tokens]\nbackup_dir = "~nouser-q"\n'),
     ["tokens.backup_dir", "~nouser-q"]),
    ("deep arrays", DEEP_ARRAY + BASE, ["nested too deeply"]),
    ("deep inline tables", DEEP_TABLE + BASE, ["nested too deeply"]),
    ("5000-digit integer", BASE.replace("interval = 5", "interval = " + "9" * 5000),
     ["TOML", "integer"]),
    ("huge integer", BASE + "\n[logs]\nbuffer_lines = 99999999999999999999999\n",
     ["logs.buffer_lines", "at most"]),
    ("nan", BASE.replace("interval = 5", "interval = nan"), ["probes.interval"]),
    ("inf", BASE.replace("interval = 5", "interval = inf"), ["probes.interval"]),
    ("bad port", BASE.replace("127.0.0.1:8188", "127.0.0.1:99999"), ["services[0].url"]),
    ("port not a number", BASE.replace("127.0.0.1:8188", "127.0.0.1:abc"),
     ["services[0].url"]),
    ("bad ipv6", BASE.replace("127.0.0.1:8188", "[::1"), ["services[0].url"]),
    ("regex too deep", BASE.replace("auth = true", 'auth = true\nprocess_pattern = "'
                                    + "(" * 3000 + '"'), ["services[0].process_pattern"]),
    ("regex repeat", BASE.replace("auth = true", 'auth = true\nprocess_pattern = "a{99999999999}"'),
     ["services[0].process_pattern"]),
]


@pytest.mark.parametrize("label,text,expected", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_config_is_one_line_exit_3(tmp_path, label, text, expected):
    """Item 9: each one is the one-line error naming file and key, exit 3, no traceback."""
    path = tmp_path / "genai-tui.toml"
    path.write_text(text)
    with pytest.raises(config.ConfigError) as err:
        config.load_file(path, env={})
    for part in expected:
        assert part in str(err.value), (part, str(err.value))
    for args in (["check"], ["tokens", "status"]):
        assert_one_line_error(cli("--config", str(path), *args, cwd=tmp_path), str(path),
                              *expected)


def test_nul_in_the_config_path_itself(tmp_path):
    with pytest.raises(config.ConfigError, match="NUL"):
        config.load_file(tmp_path / "a\x00b.toml", env={})


HOSTILE_SNIPPETS = [
    b"\\u0000", b"~nosuchuser/x", b"[" * 2000, b"{a=" * 2000, b"9" * 5000, b"nan", b"inf",
    b"\x00", b"\x1b[31m", b"\xff\xfe", b"${COMFYUI_RAW_TOKEN}", b":99999", b"(" * 3000,
    b"[[services]]\n", b"[tokens]\n", b'"', b"'''", b"= ", b"\n", b"\r", b"-1", b"0",
    b"1e400", b'"~"', b"[::1",
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    lines = data.split(b"\n")
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(7)
        i = rng.randrange(len(lines)) if lines else 0
        if op == 0 and lines:  # flip a byte
            line = bytearray(lines[i] or b" ")
            j = rng.randrange(len(line))
            line[j] = rng.randrange(256)
            lines[i] = bytes(line)
        elif op == 1 and lines:
            del lines[i]
        elif op == 2 and lines:
            lines.insert(i, lines[rng.randrange(len(lines))])
        elif op == 3 and len(lines) > 1:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op in (4, 5) and lines:  # a hostile snippet inside a line
            line = lines[i]
            j = rng.randrange(len(line) + 1)
            lines[i] = line[:j] + rng.choice(HOSTILE_SNIPPETS) + line[j:]
        else:  # replace a value (or a quoted string's content) by a snippet
            if lines and b"=" in lines[i]:
                key = lines[i].split(b"=", 1)[0]
                snippet = rng.choice(HOSTILE_SNIPPETS)
                lines[i] = key + b"= " + rng.choice([snippet, b'"' + snippet + b'"'])
    return b"\n".join(lines)


@pytest.mark.timeout(120)
def test_random_mutations_give_a_config_or_a_config_error(tmp_path):
    """Item 9: 300 seeded mutations of a valid file: a Config or a ConfigError, nothing else;
    and whatever is accepted can be used (ports, paths) without raising."""
    rng = random.Random(19)
    (tmp_path / ".env").write_text(f"COMFYUI_RAW_TOKEN={SECRET}\n")
    path = tmp_path / "genai-tui.toml"
    original = BASE.encode()
    started = time.monotonic()
    outcomes = {"config": 0, "error": 0}
    for n in range(300):
        data = mutate(rng, original)
        path.write_bytes(data)
        try:
            cfg = config.load_file(path, env={})
        except config.ConfigError as exc:
            outcomes["error"] += 1
            message = str(exc)
            assert SECRET not in message, (n, data)
            assert message.isprintable(), (n, message)
            continue
        except Exception as exc:  # noqa: BLE001 - the point of the test
            pytest.fail(f"mutation {n} raised {type(exc).__name__}: {exc!r}\n{data!r}")
        outcomes["config"] += 1
        for s in cfg.services:
            s.host_port  # noqa: B018 - must not raise
        for p in [*(loc.path for loc in cfg.tokens.locations), *cfg.host.disks]:
            os.path.lexists(p)  # a NUL byte would raise ValueError here
    assert outcomes["error"] > 50 and outcomes["config"] > 10, outcomes
    assert time.monotonic() - started < 60


# ------------------------------------------------------------------ item 6: special files


@pytest.mark.timeout(20)
def test_cli_config_naming_a_fifo_does_not_hang(tmp_path):
    """Item 6: `--config FIFO` is the one-line error with the path, at once."""
    fifo = tmp_path / "cfg.toml"
    os.mkfifo(fifo)
    started = time.monotonic()
    proc = cli("--config", str(fifo), "check", cwd=tmp_path, timeout=15)
    assert_one_line_error(proc, str(fifo), "not a regular file")
    assert time.monotonic() - started < 15


@pytest.mark.timeout(10)
@pytest.mark.parametrize("special", ["fifo", "/dev/null", "directory"])
def test_config_that_is_not_a_regular_file(tmp_path, special):
    if special == "fifo":
        path = tmp_path / "cfg.toml"
        os.mkfifo(path)
    elif special == "directory":
        path = tmp_path / "cfg.toml"
        path.mkdir()
    else:
        path = Path(special)
    with pytest.raises(config.ConfigError) as err:
        config.load_file(path, env={})
    assert str(path) in str(err.value) and "not a regular file" in str(err.value)


@pytest.mark.timeout(10)
def test_dotenv_fifo_beside_the_config_is_an_error_not_a_hang(tmp_path):
    """Item 6: a `.env` FIFO beside the config: a clear error naming it, never a hang."""
    path = tmp_path / "genai-tui.toml"
    path.write_text(BASE)
    os.mkfifo(tmp_path / ".env")
    with pytest.raises(config.ConfigError) as err:
        config.load_file(path, env={})
    assert str(tmp_path / ".env") in str(err.value)
    assert "not a regular file" in str(err.value)
    proc = cli("--config", str(path), "check", cwd=tmp_path, timeout=8)
    assert_one_line_error(proc, ".env", "not a regular file")


@pytest.mark.timeout(10)
def test_dotenv_fifo_in_the_folder_with_no_config(tmp_path):
    """Item 6: with no config file, the `.env` of the working folder is read the same way."""
    os.mkfifo(tmp_path / ".env")
    with pytest.raises(config.ConfigError, match="not a regular file"):
        config.load(env={"HOME": str(tmp_path)}, cwd=tmp_path)


@pytest.mark.parametrize("which", ["config", ".env"])
def test_oversized_config_or_dotenv_is_an_error(tmp_path, which):
    """Item 6: reads are bounded: over 1 MiB is an error naming the file."""
    path = tmp_path / "genai-tui.toml"
    big = ("# padding padding padding padding padding padding padding padding\n" * 20000)
    if which == "config":
        path.write_text(BASE + big)
        target = path
    else:
        path.write_text(BASE)
        target = tmp_path / ".env"
        target.write_text("A=1\n" + big)
    with pytest.raises(config.ConfigError) as err:
        config.load_file(path, env={})
    assert str(target) in str(err.value) and "too large" in str(err.value)


def test_a_small_dotenv_still_feeds_interpolation(tmp_path):
    path = tmp_path / "genai-tui.toml"
    path.write_text(BASE)
    (tmp_path / ".env").write_text("\ufeffORCH_PORT=8090\nexport X='y'\n")
    cfg = config.load_file(path, env={})
    assert cfg.service("orchestrator").url == "http://127.0.0.1:8090"

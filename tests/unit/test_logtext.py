"""Hostile container output: what `logtext` lets through must not be able to drive a
terminal, and no secret may survive redaction."""

from __future__ import annotations

import random

import pytest

from genai_tui.secret import fingerprint
from genai_tui.sources.logtext import (
    Redactor,
    classify,
    clean_line,
    is_clean,
    log_event,
    sanitize,
)
from tests.conftest import make_hash

ESC = "\x1b"

HOSTILE = {
    "sgr colour": f"{ESC}[31;1mred{ESC}[0m text",
    "osc 52 clipboard write": f"before{ESC}]52;c;ZXZpbCBjb21tYW5k{ESC}\\after",
    "osc 52 bel": f"before{ESC}]52;c;ZXZpbA==\x07after",
    "osc 8 hyperlink": f"{ESC}]8;;https://evil.example/{ESC}\\click{ESC}]8;;{ESC}\\ here",
    "osc title": f"{ESC}]0;pwned title\x07visible",
    "osc unterminated": f"visible{ESC}]0;swallows everything after",
    "dcs": f"a{ESC}P1$r0m{ESC}\\b",
    "dcs sixel": f"a{ESC}Pq#0;2;0;0;0#1~~~~{ESC}\\b",
    "apc": f"a{ESC}_Gf=100;AAAA{ESC}\\b",
    "pm": f"a{ESC}^privacy{ESC}\\b",
    "sos": f"a{ESC}Xstring{ESC}\\b",
    "8-bit csi": "a\x9b2Jb",
    "8-bit osc": "a\x9d52;c;AAAA\x9cb",
    "8-bit dcs": "a\x90qpayload\x9cb",
    "cursor movement": f"{ESC}[10A{ESC}[5;5H{ESC}[2K{ESC}[Soverwrite",
    "alt screen": f"{ESC}[?1049h{ESC}[?25lhidden cursor{ESC}[?1049l",
    "keypad and charset": f"{ESC}={ESC}(0lqqk{ESC}(B{ESC}>",
    "reset terminal": f"{ESC}cafter reset",
    "save restore cursor": f"{ESC}7x{ESC}8",
    "decaln": f"{ESC}#8fill",
    "bell": "ding\x07dong",
    "backspace": "abc\x08\x08\x08XYZ",
    "null and vt": "a\x00b\x0bc\x0cd",
    "del": "a\x7fb",
    "c1 nel": "a\x85b",
    "bidi override": "user\u202e\u2066txt.exe\u2069\u202c",
    "bidi isolates": "\u2067abc\u2069\u2068def\u2069",
    "lone esc at end": f"text{ESC}",
    "esc before control": f"text{ESC}\x01more",
    "broken csi": f"{ESC}[12;",
    "tab": "a\tb",
    "surrogate": "a\ud800b",
    "line separator": "a\u2028b\u2029c",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_sequences_are_removed(name):
    out = sanitize(HOSTILE[name].encode("utf-8", "surrogatepass"))
    assert len(out) == 1
    assert is_clean(out[0]), repr(out[0])
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in out[0])


def test_visible_text_survives_sequences():
    assert sanitize(HOSTILE["sgr colour"].encode()) == ["red text"]
    assert sanitize(HOSTILE["osc 52 clipboard write"].encode()) == ["beforeafter"]
    assert sanitize(HOSTILE["osc 8 hyperlink"].encode()) == ["click here"]
    assert sanitize(HOSTILE["osc title"].encode()) == ["visible"]
    assert sanitize(HOSTILE["osc unterminated"].encode()) == ["visible"]
    assert sanitize(HOSTILE["dcs"].encode()) == ["ab"]
    assert sanitize(HOSTILE["8-bit csi"].encode()) == ["ab"]
    assert sanitize(HOSTILE["bidi override"].encode()) == ["usertxt.exe"]
    assert sanitize(b"a\tb") == ["a       b"]


def test_invalid_utf8_is_replaced():
    out = sanitize(b"ok \xff\xfe \xc3\x28 \xe2\x82 end \x9b2J")
    assert out == ["ok \ufffd\ufffd \ufffd( \ufffd end \ufffd2J"]
    assert is_clean(out[0])


def test_lines_split_on_newline_only_and_crlf_is_trimmed():
    assert sanitize(b"one\r\ntwo\nthree\n") == ["one", "two", "three"]


@pytest.mark.parametrize("line, shown", [
    # what a terminal shows after the rewrites: the last segment that shows anything
    ("\x1b[32m 50%\x1b[0m\r\x1b[32m100%\x1b[0m\r\x1b[0m", "100%"),
    ("done\r\x07", "done"),
    ("tqdm \u2588\u2588\r\x1b[2Kfinal \u2588", "final \u2588"),
    # a string sequence may swallow a \r: removed as a whole, then the rest collapses
    ("before\x1b]0;ti\rtle\x07\rafter", "after"),
    ("\x9b31mred\rgreen", "green"),
])
def test_progress_lines_show_their_last_visible_state(line, shown):
    assert clean_line(line) == shown


def _shown(line: str, cap: int) -> str:
    """The definition clean_line's shortcuts must keep: every escape sequence removed, then
    the last `\\r` segment that shows anything (controls take no column), tabs expanded."""
    from genai_tui.sources import logtext

    text = logtext._ESCAPES.sub("", line)
    segments = (logtext._CONTROLS.sub("", seg).expandtabs(8) for seg in text.split("\r"))
    return logtext._cut(next(filter(None, reversed(list(segments))), ""), cap)


def test_shortcuts_clean_as_the_definition_does():
    rnd = random.Random(11)
    alphabet = ("ab \t\r\x1b[]PX^_\\\x07\x9c\x9b\x9d\x90\x98\x9e\x9f;0123?m @~ -/"
                "\u202e\u2028\u2588\u00e9\x00\x7f")
    for _ in range(50_000):
        line = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 24)))
        assert clean_line(line, 24) == _shown(line, 24), repr(line)


def test_storms_of_frames_that_show_nothing():
    assert clean_line("\x07\r" * 300_000 + "ok\r" + "\x1b[0m\r" * 300_000) == "ok"
    assert clean_line("\r" * 500_000) == ""
    assert clean_line("last\r" + "\x1b]0;t\x07\r" * 1000) == "last"


def test_carriage_return_storm_collapses_to_final_state():
    storm = "".join(f"\r{i:6d}/100000 |{'#' * (i // 5000)}" for i in range(100_000))
    out = sanitize((storm + "\n").encode())
    assert out == [f"{99999:6d}/100000 |{'#' * 19}"]
    # a trailing bare \r (tqdm's last refresh) keeps the last visible state
    assert sanitize(b" 50%|#####\r100%|##########\r\n") == ["100%|##########"]
    assert sanitize(b"\r\r\r") == [""]


def test_a_one_mib_line_is_cut_with_a_visible_marker():
    big = b"x" * (1 << 20)
    (out,) = sanitize(big, max_len=4096)
    assert out.startswith("x" * 4096)
    assert out.endswith(f" … [cut {(1 << 20) - 4096} bytes]")
    assert len(out.encode()) < 4096 + 40


def test_cut_never_splits_a_multibyte_character():
    (out,) = sanitize(("é" * 5000).encode(), max_len=101)
    head = out.split(" … ")[0]
    assert head == "é" * 50  # 100 bytes, the 101st would be half a character
    assert "[cut 9900 bytes]" in out


def test_cut_counts_bytes_dropped_upstream():
    assert clean_line("abc", 4096, dropped=10) == "abc … [cut 10 bytes]"


def test_random_bytes_never_produce_controls():
    rnd = random.Random(42)
    for _ in range(300):
        blob = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 400)))
        for line in sanitize(blob, max_len=256):
            assert is_clean(line), repr(line)
            assert len(line.encode()) <= 256 + 40


# ------------------------------------------------------------------ redaction

def _secret_fragments(secret: str, n: int = 8):
    return {secret[i:i + n] for i in range(len(secret) - n + 1)}


def assert_gone(text: str, secret: str) -> None:
    leaked = [f for f in _secret_fragments(secret) if f in text]
    assert not leaked, f"fragments of a secret survived: {len(leaked)}"


def test_comfyui_login_token_line_is_redacted_and_fingerprinted():
    h = make_hash("token-line")
    red = Redactor().redact(f"For direct API calls, use token={h}")
    assert_gone(red, h)
    assert red == f"For direct API calls, use token=[redacted {fingerprint(h)}]"


@pytest.mark.parametrize("template", [
    "Authorization: Bearer {s}",
    "authorization: bearer {s}",
    "curl -H 'Authorization: Bearer {s}' http://x/prompt",
    "GET /prompt?token={s} HTTP/1.1",
    "ws://127.0.0.1:8188/ws?clientId=abc&token={s}",
    "found {s} in the file",
    "{s}",
    '{{"bcrypt_hash": "{s}"}}',
])
def test_bcrypt_hashes_never_survive(template):
    h = make_hash(template)
    red = Redactor().redact(template.format(s=h))
    assert_gone(red, h)
    assert "$2b$" not in red


@pytest.mark.parametrize("line,secret", [
    ("Authorization: Bearer sk_live_abcdefghijklmnop", "sk_live_abcdefghijklmnop"),
    ("Authorization: Basic dXNlcjpwYXNzd29yZDEyMw==", "dXNlcjpwYXNzd29yZDEyMw=="),
    ("GET /view?filename=x.png&token=s3cr3tvalue99 200", "s3cr3tvalue99"),
    ("download hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567 ok", "hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567"),
    ("HF_TOKEN=hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567", "hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567"),
    ("openai key sk-proj-AbCdEfGhIjKlMnOpQrStUvWx", "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx"),
    ("git clone ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
     "ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"),
    ("CIVITAI_API_KEY=0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef"),
    ("civitai_token: 0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef"),
    ('{"api_key": "abcdefgh12345678"}', "abcdefgh12345678"),
    ("password=correct-horse-battery", "correct-horse-battery"),
    ("pulling https://admin:sup3rs3cret@registry.local/v2/", "sup3rs3cret"),
    ("Set-Cookie: AIOHTTP_SESSION=gAAAAABmZxyz0123456789; path=/", "gAAAAABmZxyz0123456789"),
    ("AWS AKIAIOSFODNN7EXAMPLE used", "AKIAIOSFODNN7EXAMPLE"),
])
def test_common_secret_patterns_are_redacted(line, secret):
    red = Redactor().redact(line)
    assert_gone(red, secret)
    assert "[redacted" in red


def test_configured_values_are_redacted_raw_and_hash():
    h = make_hash("configured")
    raw = "my-raw-password-42"
    r = Redactor([h, raw, "abc"])  # too short to redact without mangling ordinary words
    red = r.redact(f"login as admin with {raw} (hash {h}) abc")
    assert_gone(red, raw)
    assert_gone(red, h)
    assert f"[redacted {fingerprint(h)}]" in red
    assert red.endswith("abc")
    assert r.secret_count == 2


@pytest.mark.parametrize("line", [
    "got prompt",
    "Prompt executed in 12.34 seconds",
    "Requested to load SDXL",
    "loaded completely 9000.0 4000.1234 True",
    "max_tokens=77 tokenizer=/models/clip/tokenizer.json",
    "Token validated successfully",
    "Bearer token required",
    "Please set up your password before use. The token will be a hashed string derived "
    "from your password.",
    "Cannot decrypt cookie value, create a new fresh session",
    "model weight dtype torch.float16, manual cast: None",
    "To see the GUI go to: http://0.0.0.0:8188",
    "  0%|          | 0/20 [00:00<?, ?it/s]",
    "Missing keys: ['text_projection.weight', 'logit_scale']",
])
def test_ordinary_lines_are_not_mangled(line):
    assert Redactor(["unrelated-secret-value"]).redact(line) == line


def test_secret_split_by_an_escape_sequence_is_still_redacted():
    h = make_hash("split")
    raw = f"use token={h[:20]}\x1b[0m{h[20:]}".encode()
    (clean,) = sanitize(raw)
    assert_gone(Redactor().redact(clean), h)


# ------------------------------------------------------------------ classes and events

@pytest.mark.parametrize("line,kind", [
    (f"For direct API calls, use token={make_hash('c')}", "login"),
    ("Password directory does not exists, creating...", "login"),
    ("Cannot decrypt cookie value, create a new fresh session", "login"),
    ("Please set up your password before use. The token will be ...", "login_error"),
    ("   0.0 seconds (IMPORT FAILED): /root/ComfyUI/custom_nodes/ComfyUI-Login", "login_error"),
    ("   0.0 seconds (IMPORT FAILED): /root/ComfyUI/custom_nodes/ComfyUI-Foo", "import_failed"),
    ("torch.OutOfMemoryError: Allocation on device", "oom"),
    ("Got an OOM, unloading all loaded models.", "oom"),
    ("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB", "oom"),
    ("Traceback (most recent call last):", "traceback"),
    ('  File "/workspace/ComfyUI/execution.py", line 496, in execute', "traceback"),
    ("!!! Exception during processing !!! boom", "error"),
    ("Error handling request", "error"),
    ("ValueError: not enough values to unpack", "error"),
    ("Cannot import /x/custom_nodes/Foo module for custom nodes: No module named 'bcrypt'",
     "error"),
    ("WARNING: request with non matching host and origin", "warning"),
    ("got prompt", "job"),
    ("Prompt executed in 00:12:01", "job"),
    ("Requested to load SDXL", None),
    ("model_type EPS", None),
])
def test_classify(line, kind):
    assert classify(line) == kind


def test_log_events_are_computed_before_redaction():
    h = make_hash("event")
    ts = 1_700_000_000_123_456_789
    ev = log_event("qwen", f"For direct API calls, use token={h}", ts)
    assert ev is not None and ev.kind == "token"
    assert ev.fingerprint == fingerprint(h)
    assert ev.at is not None and ev.at.year == 2023
    assert log_event("qwen", "Please set up your password before use. x").kind == "no_password"
    row = "   0.1 seconds (IMPORT FAILED): /root/ComfyUI/custom_nodes/ComfyUI-Login"
    assert log_event("qwen", row).kind == "import_failed"
    assert log_event("qwen", row.replace("Login", "Manager")) is None
    assert log_event("qwen", "Got an OOM, unloading all loaded models.").kind == "oom"
    assert log_event("qwen", "Prompt executed in 3.20 seconds").kind == "job_done"
    assert log_event("qwen", "got prompt").kind == "job_start"
    # the redacted line no longer carries the hash, so no fingerprint can come from it
    red = Redactor().redact(f"For direct API calls, use token={h}")
    assert log_event("qwen", red).fingerprint != fingerprint(h)


def test_str_input_with_lone_surrogates_is_made_encodable():
    out = clean_line("a\ud800b\udcffc")
    out.encode("utf-8")  # would raise on a lone surrogate
    assert out == "abc"


# ------------------------------------------------------------------ raw stream → lines
# (genai_tui.sources.logs, pure parts: no Docker needed to check the byte handling)

import struct  # noqa: E402

from genai_tui.sources.logs import (  # noqa: E402
    RAW_LINE_CAP,
    LineAssembler,
    configured_secrets,
    format_since,
    parse_ts,
)

TS = b"2026-01-01T00:00:00.123456789Z"
TS_NS = 1_767_225_600_123_456_789


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


def test_parse_ts_forms():
    assert parse_ts(TS) == TS_NS
    assert parse_ts("2026-01-01T00:00:00.1Z") == TS_NS - 23_456_789
    assert parse_ts("2026-01-01T02:00:00.123456789+02:00") == TS_NS
    assert parse_ts("2026-01-01T00:00:00Z") == TS_NS - 123_456_789
    assert parse_ts(b"not a time") is None
    assert parse_ts(b"\xff\xfe") is None
    assert format_since(TS_NS) == "1767225600.123456789"


def test_frames_split_anywhere_give_whole_lines_per_stream():
    wire = (frame(1, TS + b" out one\n") + frame(2, TS + b" err one\n")
            + frame(1, TS + b" out two\n"))
    for cut in range(1, len(wire)):
        asm = LineAssembler(framed=True)
        got = asm.feed(wire[:cut]) + asm.feed(wire[cut:])
        assert [(t, b) for t, b, _ in got] == [
            (TS_NS, b"out one"), (TS_NS, b"err one"), (TS_NS, b"out two")]


def _random_wire(rnd: random.Random) -> bytes:
    """Frames of every shape the engine (or a confused one) can send: whole lines, several
    lines in one message, 16 KiB parts, unterminated last output, odd or missing times,
    stdin/unknown stream ids, a header whose size is wrong only by its own account."""
    out = []
    for _ in range(rnd.randint(1, 40)):
        sec = rnd.choice([b"00", b"01", b"59"])
        ts = rnd.choice([b"2026-01-01T00:00:" + sec + b".123456789Z",
                         b"2026-01-01T00:00:" + sec + b".1Z", b"2026-13-01T00:00:00.000000000Z",
                         b"not-a-time", b""])
        body = rnd.choice([b"plain", b"\x1b[31mred\x1b[0m", "ünï".encode(), b"a\nb", b"",
                           b"x" * 16384, b"\r\n", b"\x01\x00\x00\x00"])
        if rnd.random() < 0.8:
            body += b"\n"
        out.append(frame(rnd.choice([1, 1, 2, 2, 0, 3]), ts + b" " + body if ts else body))
    return b"".join(out)


def test_fast_path_gives_what_the_general_path_gives(monkeypatch):
    rnd = random.Random(20261125)
    for _ in range(400):
        wire = _random_wire(rnd)
        cuts = sorted(rnd.sample(range(len(wire) + 1), k=min(3, len(wire) + 1)))
        pieces = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
        fast = LineAssembler(framed=True)
        got = [x for piece in pieces for x in fast.feed(piece)] + fast.flush()
        with monkeypatch.context() as m:
            m.setattr(LineAssembler, "_whole_lines", lambda self, data, pos, out: pos)
            general = LineAssembler(framed=True)
            want = [x for piece in pieces for x in general.feed(piece)] + general.flush()
        assert got == want
        assert fast.last_ts == general.last_ts


def test_long_line_split_by_docker_is_joined_and_inner_timestamps_dropped():
    # Docker splits messages over 16 KiB; each part gets its own timestamp prefix
    ts2 = b"2026-01-01T00:00:00.223456789Z"
    wire = (frame(2, TS + b" " + b"a" * 16384) + frame(1, ts2 + b" interleaved stdout\n")
            + frame(2, ts2 + b" " + b"b" * 100 + b"\n"))
    got = LineAssembler(framed=True).feed(wire)
    assert [(t, b) for t, b, _ in got] == [
        (TS_NS + 100_000_000, b"interleaved stdout"), (TS_NS, b"a" * 16384 + b"b" * 100)]


def test_tty_stream_is_split_on_newlines():
    asm = LineAssembler(framed=False)
    got = asm.feed(TS + b" one\r\n" + TS + b" tw") + asm.feed(b"o\r\n")
    assert [b for _, b, _ in got] == [b"one\r", b"two\r"]
    assert [clean_line(b.decode()) for _, b, _ in got] == ["one", "two"]


def test_endless_line_without_newline_is_bounded():
    asm = LineAssembler(framed=True)
    piece = b"x" * 16384
    for _ in range(2 * RAW_LINE_CAP // len(piece)):
        assert asm.feed(frame(1, TS + b" " + piece)) == []
    kept = sum(len(p) for p in asm._partial.values())
    assert kept <= RAW_LINE_CAP + len(piece)
    (ts, raw, dropped), = asm.feed(frame(1, TS + b" end\n"))
    line = clean_line(raw.decode(), 4096, dropped)
    assert line.endswith(f"[cut {2 * RAW_LINE_CAP + 3 - 4096} bytes]")


def test_endless_carriage_return_line_keeps_the_final_state():
    storm = b"".join(b"\r%08d" % i + b"." * 7 for i in range(204_800))  # 3.2 MiB, no \n
    parts = [storm[i:i + 16384] for i in range(0, len(storm), 16384)]
    assert len(parts[-1]) == 16384  # Docker sends such a line in exact 16 KiB parts
    asm = LineAssembler(framed=True)
    for part in parts:
        assert asm.feed(frame(1, TS + b" " + part)) == []
    assert sum(len(p) for p in asm._partial.values()) <= RAW_LINE_CAP + 16384
    (_, raw, dropped), = asm.feed(frame(1, TS + b" done\n"))
    assert clean_line(raw.decode(), 4096, dropped) == "00204799.......done"


def test_unterminated_message_before_exit_is_a_line_of_its_own():
    # what Docker logs when a process writes "crash" and dies: a message without \n
    asm = LineAssembler(framed=True)
    assert asm.feed(frame(2, TS + b" crash without newline")) == [
        (TS_NS, b"crash without newline", 0)]
    assert asm.feed(frame(2, TS + b" next run\n")) == [(TS_NS, b"next run", 0)]


def test_a_long_line_cut_by_a_closed_stream_is_not_half_delivered():
    asm = LineAssembler(framed=True)
    assert asm.feed(frame(1, TS + b" " + b"a" * 16384)) == []
    assert asm.flush() == []  # the reopened stream replays the whole line


def test_configured_secrets_reader_tolerates_every_format(tmp_path):
    from genai_tui.config import TokenLocation, TokensConfig

    h1, h2, h3 = make_hash("a"), make_hash("b"), make_hash("c")
    (tmp_path / "PASSWORD").write_text(f"{h1}\nadmin")
    (tmp_path / "hash.token").write_text(f"\ufeff{h2}\r\n")
    (tmp_path / ".env").write_text(f"OTHER=x\nCOMFYUI_API_TOKEN='{h3}'\n"
                                   "COMFYUI_RAW_TOKEN=\"raw password 123\"\n")
    (tmp_path / "conf.json").write_text('{"nested": {"bcrypt_hash": "' + h1 + '"}}')
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00garbage")
    locs = (
        TokenLocation("p", tmp_path / "PASSWORD", "password_file"),
        TokenLocation("h", tmp_path / "hash.token", "hash_file"),
        TokenLocation("e", tmp_path / ".env", "env", key="COMFYUI_API_TOKEN"),
        TokenLocation("r", tmp_path / ".env", "raw_env", key="COMFYUI_RAW_TOKEN"),
        TokenLocation("j", tmp_path / "conf.json", "json", key="bcrypt_hash"),
        TokenLocation("b", tmp_path / "broken.json", "json", key="bcrypt_hash"),
        TokenLocation("x", tmp_path / "binary", "hash_file"),
        TokenLocation("m", tmp_path / "missing", "hash_file"),
        TokenLocation("d", tmp_path, "hash_file"),  # a folder
    )
    values = set(configured_secrets(TokensConfig(locations=locs)))
    assert {h1, h2, h3, "raw password 123"} <= values
    red = Redactor(values).redact(f"{h1} {h2} {h3} raw password 123")
    for secret in (h1, h2, h3, "raw password 123"):
        assert_gone(red, secret)


# ------------------------------------------------------------------ a batch at a time

from genai_tui.sim.scenarios import build_flood_pool  # noqa: E402
from genai_tui.sources.logs import LATER, LogLine, RecentEvents  # noqa: E402
from genai_tui.sources.logtext import LineProcessor, _classify  # noqa: E402

HOSTILE_LINES = [
    "\x1b]0;owned\x07title", "\x1b[2J\x1b[Hclear", "50%\r100%\r", "tab\there", "\x9b31mc1",
    "bidi \u202eevil", "\x1b]52;c;Zm9v\r\x07clip", "é ünicode K", "  File \"a.py\", line 1",
    "    indented under it", "Traceback (most recent call last):", "  File \"b.py\", line 2",
    "    x = 1", "  CUDA out of memory here", "    after a class", "plain after",
    "\x1b[31m  File \"c.py\", line 3\x1b[0m", "   !!! Exception during processing !!!",
    "x" * 5000, "Authorization: Bearer abcdefghijklmnop", "api_key=supersecretvalue",
    "Please set up your password before use", "Got an OOM, unloading all loaded models.",
    "   0.0 seconds (IMPORT FAILED): /root/ComfyUI/custom_nodes/ComfyUI-Login",
]


def _one_by_one(service, tss, raws, drops, redactor):
    """The definition: every line through clean_line → classify/log_event (unredacted) →
    redact, in order, with the traceback continuation rule and one OOM event per 10 s."""
    texts, kinds, events = [], [], []
    prev, last_oom = None, 0
    for ts, raw, dropped in zip(tss, raws, drops, strict=True):
        text = clean_line(raw.decode("utf-8", "replace"), 4096, dropped)
        kind = classify(text)
        ev = log_event(service, text, ts)
        if ev is not None:
            if ev.kind != "oom" or ts - last_oom >= 10_000_000_000:
                events.append(ev)
            if ev.kind == "oom":
                last_oom = ts
        if kind is None and prev == "traceback" and text[:1] == " ":
            kind = "traceback"
        prev = kind
        texts.append(redactor.redact(text))
        kinds.append(kind)
    return texts, kinds, events


def test_batches_give_what_one_line_at_a_time_gives():
    hash_ = make_hash("batch")
    redactor = Redactor([hash_])
    pool = [raw.rstrip(b"\n") for raw in build_flood_pool(600)]
    pool += [h.encode() for h in HOSTILE_LINES]
    pool += [f"For direct API calls, use token={hash_}".encode(), b"\xff\xfe broken utf-8"]
    rnd = random.Random(7)
    lines = [rnd.choice(pool) for _ in range(3000)]
    tss = [TS_NS + i * 3_000_000_000 for i in range(len(lines))]  # OOMs 3 s apart
    drops = [rnd.choice([0] * 30 + [99]) for _ in lines]
    want = _one_by_one("svc", tss, lines, drops, redactor)
    proc = LineProcessor("svc")
    got_lines: list[LogLine] = []
    got_events = []
    k = 0
    while k < len(lines):  # batches of every size, continuations across their edges
        n = rnd.randint(1, 300)
        texts, kinds, events = proc.process(tss[k:k + n], lines[k:k + n], drops[k:k + n])
        for i, text in enumerate(texts):
            got_lines.append(LogLine(tss[k + i], "svc", text, kinds.get(i, LATER), redactor))
        got_events += events
        k += n
    assert [ln.text for ln in got_lines] == want[0]
    assert [ln.kind for ln in got_lines] == want[1]
    assert got_events == want[2]
    assert {e.kind for e in got_events} >= {"token", "oom", "job_done", "no_password",
                                            "import_failed", "error"}
    assert "traceback" in want[1] and _classify("    x = 1") is None  # continuations seen


def test_lines_are_redacted_before_anything_reads_them():
    hash_ = make_hash("lazy")
    redactor = Redactor()
    texts, _, events = LineProcessor("svc").process(
        [TS_NS], [f"For direct API calls, use token={hash_}".encode()], [0])
    line = LogLine(TS_NS, "svc", texts[0], redactor=redactor)
    redactor.set_secrets([hash_])  # the hub learnt the hash after the line was read
    assert hash_ not in line.text and hash_ not in repr(line)
    assert line.text == f"For direct API calls, use token=[redacted {fingerprint(hash_)}]"
    assert events[0].fingerprint == fingerprint(hash_) and line.kind == "login"


def test_a_flood_of_one_event_kind_keeps_the_others():
    from genai_tui.model import LogEvent

    store = RecentEvents(per_kind=5)
    store.extend([LogEvent("qwen", "token", None, "fp:1")])
    store.extend(LogEvent("qwen", "job_done", None) for _ in range(1000))
    kinds = [e.kind for e in store.list()]
    assert kinds.count("token") == 1 and kinds.count("job_done") == 5
    assert len(store) == 6 and len(store.take()) == 6 and len(store) == 0

"""Container log text made safe to store and show: sanitising, secret redaction, highlighting
classes and diagnosis events.

Container output is untrusted bytes that end up on an admin's terminal, and ComfyUI-Login
prints its bearer token at start-up. Everything here is pure (no I/O) so the follower thread,
the UI, the saved files and the tests all share one definition of "clean".

Order of use, per line: `clean_line` (or `sanitize` for a blob) → `log_event` on the clean
but not yet redacted text (it needs the hash to fingerprint it) → store → `Redactor.redact`
before the text is shown, saved or searched. `LineProcessor` does the first steps for a
whole batch of a follower's lines.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from itertools import accumulate, compress, count
from operator import add, not_

from genai_tui.model import LogEvent
from genai_tui.secret import BCRYPT_ANYWHERE, fingerprint

#: default cap of one stored line, in UTF-8 bytes
MAX_LINE_BYTES = 4096
CUT_MARKER = " … [cut {n} bytes]"
REDACTED = "[redacted]"

# ------------------------------------------------------------------ sanitising

# Terminal sequences, longest forms first. The 8-bit C1 introducers (U+009B CSI, U+009D OSC,
# U+0090 DCS, U+0098 SOS, U+009E PM, U+009F APC) are what a UTF-8 terminal may honour when a
# container prints them as C2 9B etc. A string sequence without its terminator is removed to
# the end of the line, as a terminal would swallow it.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI (colours, cursor moves, alt screen, ...)
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c|\x1b|$)"  # OSC (title, 8, 52, ...)
    r"|(?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x1b\x9c]*(?:\x1b\\|\x9c|\x1b|$)"  # DCS SOS PM APC
    r"|\x1b[ -/]*[0-~]"  # two-char escapes: ESC 7, ESC c, ESC ( B, ESC # 8 ...
    r"|\x1b"  # a lone ESC (end of line, or before a byte no sequence accepts)
)
# The common case is cheaper: with no string sequence and no 8-bit introducer in a line,
# only these can occur, and a pattern that starts with one literal is scanned fast.
_SIMPLE_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|[ -/]*[0-~]|)")
_STRING_ESC = re.compile(r"\x1b[]PX^_]")
_C1_INTRODUCERS = "\x90\x98\x9b\x9d\x9e\x9f"
# Everything else that is not plain text: C0 (tab is expanded before), DEL, C1, bidi
# embeddings/overrides/isolates and marks (Trojan-Source style reordering), line/paragraph
# separators, and lone surrogates (unencodable, they would crash the terminal writer).
_CONTROLS = re.compile(
    "[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
    "\u2066-\u2069\ud800-\udfff]"
)
_CONTROLS_BUT_CR = re.compile(_CONTROLS.pattern.replace("\x0a-\x1f", "\x0a-\x0c\x0e-\x1f"))
#: progress frames (`\r` segments) looked at one by one before cleaning the whole line
_LAST_FRAMES = 8


def clean_line(text: str, max_len: int = MAX_LINE_BYTES, dropped: int = 0) -> str:
    """One line (no `\\n` inside) made printable: escapes and controls removed, `\\r`
    progress updates collapsed to their final state, cut to `max_len` UTF-8 bytes.

    `dropped` counts bytes the caller already discarded (an over-long partial line), so the
    cut marker tells the whole truth."""
    if not (text.isascii() and text.isprintable()):
        if any(c in text for c in _C1_INTRODUCERS) or (
                "\x1b" in text and _STRING_ESC.search(text)):
            text = _printable(text, _ESCAPES)
        elif "\r" in text:
            # a progress bar's frames: the last one that shows anything is all that needs
            # cleaning (only string sequences, absent here, can span a `\r`); when the last
            # few show nothing (a hostile storm), the whole line is cleaned in one pass
            frames = filter(None, reversed(text.rsplit("\r", _LAST_FRAMES)[1:]))
            shown = next(filter(None, (_printable(f, _SIMPLE_ESCAPES) for f in frames)), "")
            text = shown or _printable(text, _SIMPLE_ESCAPES)
        else:
            text = _printable(text, _SIMPLE_ESCAPES)
    return _cut(text, max_len, dropped)


def _printable(text: str, escapes: re.Pattern[str]) -> str:
    text = escapes.sub("", text)
    if "\r" in text:  # what a terminal shows after `\r` rewrites: the last segment that
        text = _last_segment(_CONTROLS_BUT_CR.sub("", text))  # shows anything
    return _visible(text)


def _last_segment(text: str) -> str:
    for seg in reversed(text.split("\r")):
        if seg:
            return seg
    return ""


def _visible(text: str) -> str:
    """Escape-free text without `\\r`: controls removed (they take no column), then tabs
    expanded."""
    if not text.isprintable():
        text = _CONTROLS.sub("", text)
    return text.expandtabs(8) if "\t" in text else text


def _cut(text: str, max_len: int, dropped: int = 0) -> str:
    if len(text) * 4 <= max_len and not dropped:
        return text  # cannot exceed the cap even if every char took 4 bytes
    data = text.encode("utf-8", "replace")
    if len(data) <= max_len and not dropped:
        return text
    head = data[:max_len].decode("utf-8", "ignore")  # never half a character
    removed = len(data) - len(head.encode("utf-8")) + dropped
    return head + CUT_MARKER.format(n=removed)


def sanitize(raw: bytes | str, max_len: int = MAX_LINE_BYTES) -> list[str]:
    """Untrusted log output → clean lines (invalid UTF-8 replaced, split on `\\n`)."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else raw
    if text.endswith("\n"):
        text = text[:-1]
    return [clean_line(part, max_len) for part in text.split("\n")]


def is_clean(text: str) -> bool:
    """True when nothing in `text` can drive a terminal (what the tests assert)."""
    return "\t" not in text and not _CONTROLS.search(text) and "\x1b" not in text


# ------------------------------------------------------------------ redaction

_TOKEN_LINE = re.compile(r"(For direct API calls, use token=)(.*)$")
_AUTH_HEADER = re.compile(
    r"(?i)\b((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?(?:[A-Za-z]+\s+)?)([^\s\"']{6,})"
)
_BEARER = re.compile(r"(?i)\b(bearer)(\s+)([A-Za-z0-9._~+/=$:-]{8,})")
_QUERY_TOKEN = re.compile(r"(?i)([?&;](?:token|access_token|api_key|apikey|key)=)([^&\s\"'#<>]+)")
_URL_CREDS = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)([^@\s/]+)(@)", re.I)
# keys with a recognisable vendor prefix: safe to redact wherever they appear
_PREFIXED = re.compile(
    r"\b(?:hf_[A-Za-z0-9]{30,}"  # Hugging Face
    r"|api_org_[A-Za-z0-9]{30,}"
    r"|sk-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_-]{20,}"  # OpenAI, Anthropic, Stripe...
    r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}"  # GitHub
    r"|glpat-[A-Za-z0-9_-]{20,}"  # GitLab
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
    r"|AKIA[0-9A-Z]{16}"  # AWS access key id
    r"|eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"  # JWT
    r")"
)
# `name=value` / `name: value` / `"name": "value"` where the name ends in a secret-ish word:
# CIVITAI_API_KEY=..., hf_token: ..., "password": "...". The value must be 8+ characters so
# `max_tokens=77` or `token: none` stay readable; `tokenizer=...` does not match at all.
_KEYED = re.compile(
    r"(?i)\b([A-Za-z0-9_.-]*(?:api[_-]?key|access[_-]?key|secret(?:[_-]?key)?|token"
    r"|passw(?:or)?d|auth|credentials?|aiohttp_session))"
    r"(\"?'?\s*[:=]\s*\"?'?)"
    r"([^\s\"',;&]{8,})"
)
# cheap pre-check on the lower-cased line (a case-insensitive alternation costs ~10x more):
# lines without any of these cannot hold a secret we know how to spot
_TRIGGER = re.compile(
    r"token|bearer|\$2[aby]\$|hf_|api_org_|sk-|gh[pousr]_|github_pat_|glpat-|xox|akia|eyj"
    r"|key|secret|passw|auth|credential|session|://[^/\s]*@"
)
_MIN_SECRET = 6


class Redactor:
    """Removes secrets from clean lines before they are shown, saved or searched.

    `secrets` are the exact values held in the configured token locations (hashes and raw
    passwords); values shorter than 6 characters are ignored (they would mangle ordinary
    words and are not worth hiding from a log reader anyway)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: tuple[str, ...] = ()
        self._secret_re: re.Pattern[str] | None = None
        self.set_secrets(secrets)

    def set_secrets(self, secrets: Iterable[str]) -> None:
        """Replace the configured values (they may change when the token files do)."""
        values = sorted({s.strip() for s in secrets if s and len(s.strip()) >= _MIN_SECRET},
                        key=len, reverse=True)
        self._secrets = tuple(values)
        self._secret_re = (re.compile("|".join(re.escape(v) for v in values))
                           if values else None)

    @property
    def secret_count(self) -> int:
        return len(self._secrets)

    def redact(self, line: str) -> str:
        rx = self._secret_re  # one read: set_secrets may swap it from another thread
        if rx is not None and rx.search(line):
            line = rx.sub(_configured, line)
        if not _TRIGGER.search(line.lower()):
            return line
        line = _TOKEN_LINE.sub(_token_value, line)
        line = BCRYPT_ANYWHERE.sub(_hash_value, line)
        line = _AUTH_HEADER.sub(_auth_value, line)
        line = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", line)
        line = _QUERY_TOKEN.sub(lambda m: m.group(1) + REDACTED, line)
        line = _URL_CREDS.sub(lambda m: m.group(1) + REDACTED + m.group(3), line)
        line = _PREFIXED.sub(REDACTED, line)
        line = _KEYED.sub(_keyed_value, line)
        return line


def _configured(m: re.Match[str]) -> str:
    value = m.group(0)
    if BCRYPT_ANYWHERE.fullmatch(value):
        return f"[redacted {fingerprint(value)}]"
    return REDACTED


def _hash_value(m: re.Match[str]) -> str:
    return f"[redacted {fingerprint(m.group(0))}]"


def _token_value(m: re.Match[str]) -> str:
    value = m.group(2).strip()
    if not value or value.startswith("[redacted"):
        return m.group(0)
    return f"{m.group(1)}[redacted {fingerprint(value)}]"


def _auth_value(m: re.Match[str]) -> str:
    if m.group(2).startswith("[redacted"):
        return m.group(0)
    return m.group(1) + REDACTED


def _keyed_value(m: re.Match[str]) -> str:
    if m.group(3).startswith("[redacted"):
        return m.group(0)
    return m.group(1) + m.group(2) + REDACTED


# ------------------------------------------------------------------ classification

#: highlight classes, most specific first; the UI maps each to a style
KINDS = ("login_error", "import_failed", "login", "oom", "traceback", "error", "warning", "job")

_TOKEN_RE = re.compile(r"For direct API calls, use token=(\S*)")
_NO_PASSWORD = "Please set up your password before use"
_IMPORT_FAILED_ROW = re.compile(r"seconds \(IMPORT FAILED\):.*[/\\]custom_nodes[/\\](.*)$")
_OOM = re.compile(r"Got an OOM|OutOfMemoryError|CUDA out of memory")
_JOB_DONE = re.compile(r"Prompt executed in (?:[\d.]+ seconds|\d{2}:\d{2}:\d{2})")
_LOGIN = re.compile(
    r"For direct API calls, use token="
    r"|Password directory does not exists, creating"
    r"|Cannot decrypt cookie value, create a new fresh session"
)
_TRACEBACK = re.compile(r"^Traceback \(most recent call last\):|^\s+File \".*\", line \d+")
_ERROR = re.compile(
    r"!!! Exception during processing !!!|^Error handling request|^Processing interrupted"
    r"|^invalid prompt:|^Failed to validate prompt|^Cannot import .* module for custom nodes"
    r"|IMPORT FAILED|\bERROR\b|^(?:[A-Za-z_][\w.]*\.)?[A-Za-z_]\w*(?:Error|Exception)\b(?::|$)"
    r"|^Exception\b|\bCRITICAL\b|\bFATAL\b|\bpanic:"
)
_WARNING = re.compile(r"^WARNING\b|\bWARNING:|\bWARN\b|^Skip .* module for custom nodes")
_JOB = re.compile(r"^got prompt$|Prompt executed in ")
# pre-check for classify and log_event, on the lower-cased line
_CLASSIFY_TRIGGER = re.compile(
    r"token|password|cookie|oom|memory|traceback|file \"|error|exception|interrupted"
    r"|invalid|failed|cannot import|warn|skip|critical|fatal|panic|prompt"
    r"|it/s\]|s/it\]|load"
)


def classify(line: str) -> str | None:
    """The highlight class of a (clean) line, or None for an ordinary line."""
    if not _CLASSIFY_TRIGGER.search(line.lower()):
        return None
    return _classify(line)


def _classify(line: str) -> str | None:
    if _NO_PASSWORD in line:
        return "login_error"
    m = _IMPORT_FAILED_ROW.search(line)
    if m:
        return "login_error" if "comfyui-login" in m.group(1).lower() else "import_failed"
    if _LOGIN.search(line):
        return "login"
    if _OOM.search(line):
        return "oom"
    if _TRACEBACK.search(line):
        return "traceback"
    if _ERROR.search(line):
        return "error"
    if _WARNING.search(line):
        return "warning"
    if _JOB.search(line):
        return "job"
    return None


def ts_to_datetime(ts_ns: int) -> datetime | None:
    return datetime.fromtimestamp(ts_ns / 1e9, UTC) if ts_ns > 0 else None


def log_event(service: str, line: str, ts: int | datetime | None = None) -> LogEvent | None:
    """A diagnosis event for a clean, NOT yet redacted line (the token event carries the
    fingerprint of the hash, which redaction would remove). `ts` is ns since the epoch."""
    if not _CLASSIFY_TRIGGER.search(line.lower()):
        return None
    return _event(service, line, ts)


#: what `_event(quiet_oom=True)` returns for an OOM line: seen, no event built
_OOM_SEEN = LogEvent(service="", kind="oom")


def _event(service: str, line: str, ts: int | datetime | None, *,
           quiet_oom: bool = False) -> LogEvent | None:
    """The event a clean line carries. `quiet_oom`: an OOM line inside the gap after the
    last one gives `_OOM_SEEN` (its evidence, cleaned and redacted, costs ~20 µs, and an
    OOM burst is thousands of lines)."""
    kind: str | None = None
    fp: str | None = None
    # each regex behind the literal it cannot match without: a flood of progress bars
    # reaches this function for nearly every other line
    m = _TOKEN_RE.search(line) if "use token=" in line else None
    if m:
        kind = "token"
        fp = fingerprint(m.group(1)) if m.group(1) else None
    elif _NO_PASSWORD in line:
        kind = "no_password"
    elif "(IMPORT FAILED):" in line and (r := _IMPORT_FAILED_ROW.search(line)) \
            and "comfyui-login" in r.group(1).lower():
        kind = "import_failed"
    elif "Got an OOM" in line or "OutOfMemoryError" in line or "CUDA out of memory" in line:
        if quiet_oom:
            return _OOM_SEEN
        kind = "oom"  # exactly what _OOM matches
    elif "Prompt executed in " in line and _JOB_DONE.search(line):
        kind = "job_done"
    elif "!!! Exception during processing !!!" in line:
        kind = "error"
    else:
        kind, fp = _job_event(line)  # fp: the parsed detail (never the line itself)
        if kind is None:
            return None
        at = ts if isinstance(ts, datetime) else ts_to_datetime(ts or 0)
        return LogEvent(service=service, kind=kind, at=at, detail=fp)
    if kind is None:
        return None
    at = ts if isinstance(ts, datetime) else ts_to_datetime(ts or 0)
    # the evidence a finding quotes ("last error logged: …"): cleaned and redacted here,
    # since events are computed before the display redaction
    text = ""
    if kind in _EVIDENCE:
        from genai_tui.safety import shown  # safety imports this module's tables

        text = shown(_GENERIC.redact(line), 300)
    return LogEvent(service=service, kind=kind, at=at, fingerprint=fp, text=text)


# ComfyUI's work lines (the jobs source reads them): tqdm bars as samplers print them,
# the model manager's load/unload lines, and the start/stop of a prompt
_TQDM = re.compile(r"(\d{1,3})%\|[^|]{0,80}\|\s*(\d{1,6})/(\d{1,6})\s*\[[\d:]{1,12}<[\d:?]{1,12},"
                   r"\s*([\d.]{1,12}|\?)\s*(it/s|s/it)\]")
_MODEL_LOAD = re.compile(r"^Requested to load ([A-Za-z_][\w.]{0,80})\s*$")
_MODEL_LOADED = re.compile(r"^loaded (?:completely|partially) ")
_UNLOADED = re.compile(r"^(\d{1,4}) models? unloaded\.")


def _job_event(line: str) -> tuple[str | None, str | None]:
    """(kind, detail) of a ComfyUI work line, (None, None) for any other line."""
    if line == "got prompt" or line.endswith("] got prompt") or line.endswith(" got prompt"):
        return "job_start", None
    if "Processing interrupted" in line:
        return "job_interrupted", None
    m = _TQDM.search(line) if "it/s]" in line or "s/it]" in line else None
    if m:
        step, steps = int(m.group(2)), int(m.group(3))
        rate: float | None = None
        if m.group(4) != "?":
            try:
                value = float(m.group(4))
                rate = value if m.group(5) == "it/s" else (1.0 / value if value else None)
            except ValueError:
                rate = None
        detail = f"{step}/{steps}" + (f" {rate:.3f}" if rate is not None else "")
        return "job_progress", detail
    if "Requested to load " in line:
        m = _MODEL_LOAD.search(_strip_prefix(line))
        if m:
            return "model_load", m.group(1)
    if "loaded completely " in line or "loaded partially " in line:
        if _MODEL_LOADED.search(_strip_prefix(line)):
            return "model_loaded", None
    if " unloaded." in line:
        m = _UNLOADED.search(_strip_prefix(line))
        if m:
            return "models_unloaded", m.group(1)
    return None, None


def _strip_prefix(line: str) -> str:
    """The message without a ComfyUI-Manager `[YYYY-mm-dd HH:MM:SS.mmm] ` stamp."""
    if line.startswith("[") and "] " in line[:40]:
        return line.split("] ", 1)[1]
    return line


# ------------------------------------------------------------------ a batch at a time

#: what can make `_event` or `_TRACEBACK` match, case as written, on the raw bytes of a
#: batch: the lines whose class is worked out now; any other line's class can wait until
#: it is drawn (`LogLine.kind`)
_EVENT_B = re.compile(
    rb"For direct API calls, use token=|Please set up your password before use"
    rb"|\(IMPORT FAILED\)|Got an OOM|OutOfMemoryError|CUDA out of memory"
    rb"|Prompt executed in |!!! Exception during processing !!!"
    rb"|Traceback \(most recent call last\):|File \""
    rb"|got prompt|Processing interrupted|it/s\]|s/it\]|Requested to load |loaded completely "
    rb"|loaded partially | models? unloaded\."
)
#: OOM lines come in bursts (exception, traceback, "Got an OOM"): one event per 10 s
OOM_EVENT_GAP_NS = 10_000_000_000


class LineProcessor:
    """Raw lines of one service → the sanitised text to store, the highlight classes that
    must be decided now, and diagnosis events; a batch at a time, because a flooding
    container sends thousands of lines per second and most of them are plain ASCII with
    nothing to clean or report: one whole-batch scan settles those, and only the lines it
    hits (or that are not plain) go through the per-line functions.

    Redaction is not done here: `LogLine.text` applies it when the line is first read.
    A class is decided here for lines that carry an event or belong to a traceback (its
    indented continuation lines depend on the line before, which only the follower sees
    in order); `LogLine.kind` works out the others when they are drawn."""

    def __init__(self, service: str, max_len: int = MAX_LINE_BYTES) -> None:
        self.service = service
        self.max_len = max_len
        self.prev_kind: str | None = None
        self.last_oom = 0

    def process(self, tss: Sequence[int], raws: Sequence[bytes], drops: Sequence[int],
                ) -> tuple[list[str], dict[int, str | None], list[LogEvent]]:
        """Parallel sequences in (raw lines hold no `\\n`); the clean, NOT yet redacted
        texts, the classes decided now (by line index) and the events out."""
        n = len(raws)
        blob = b"\n".join(raws)
        texts = blob.decode("utf-8", "replace").split("\n")  # = each line decoded alone
        if len(texts) != n:  # a raw line with a newline inside (never from LineAssembler)
            texts = [r.decode("utf-8", "replace") for r in raws]
            decide = set(range(n))
        else:
            ends = list(map(add, accumulate(map(len, raws)), count(1)))
            decide = _lines_hit(_EVENT_B, blob, ends)
        # not printable, or maybe longer than the cap: clean_line, the long way (for any
        # other line it would change nothing). Built-in loops only: this runs for every line.
        lines = range(n)
        slow = set(compress(lines, map(not_, map(str.isprintable, texts))))
        slow.update(compress(lines, map((self.max_len // 4).__lt__, map(len, texts))))
        slow.update(compress(lines, drops))
        kinds: dict[int, str | None] = {}
        events: list[LogEvent] = []
        for i in sorted(slow | decide):
            text = texts[i]
            if i in slow:
                texts[i] = text = clean_line(text, self.max_len, drops[i])
                if i not in decide and not _EVENT_B.search(text.encode("utf-8", "replace")):
                    continue
            if 'File "' in text or "Traceback (" in text:  # its class steers the next lines
                kinds[i] = _classify(text)
            # unredacted: it fingerprints the hash
            ev = _event(self.service, text, tss[i],
                        quiet_oom=tss[i] - self.last_oom < OOM_EVENT_GAP_NS)
            if ev is not None:
                if ev.kind == "oom":
                    self.last_oom = tss[i]  # a burst keeps the gap open
                if ev is not _OOM_SEEN:
                    events.append(ev)
        self._continue_tracebacks(texts, kinds)
        return texts, kinds, events

    def _continue_tracebacks(self, texts: list[str], kinds: dict[int, str | None]) -> None:
        """Indented lines right after a traceback line belong to it, unless they have a
        class of their own. Every traceback line is decided here (`_EVENT_B` finds its
        start), so an undecided last line of a batch is no traceback."""
        starts = sorted(i for i, k in kinds.items() if k == "traceback")
        if self.prev_kind == "traceback":
            starts.insert(0, -1)
        n = len(texts)
        for i in starts:
            j = i + 1
            while j < n and texts[j][:1] == " ":
                kind = kinds[j] if j in kinds else classify(texts[j])
                if kind not in (None, "traceback"):
                    kinds[j] = kind
                    break
                kinds[j] = "traceback"
                j += 1
        if n:
            self.prev_kind = kinds.get(n - 1)


def _lines_hit(rx: re.Pattern[bytes], blob: bytes, ends: list[int]) -> set[int]:
    """Indexes of the lines of `blob` (`ends[i]` = offset after line i's `\\n`) in which
    `rx` matches; one search per line hit, the rest of that line is skipped."""
    hit: set[int] = set()
    search = rx.search
    pos = 0
    while (m := search(blob, pos)) is not None:
        i = bisect_right(ends, m.start())
        hit.add(i)
        pos = ends[i]
    return hit


_EVIDENCE = frozenset({"error", "oom", "import_failed", "no_password", "traceback"})
_GENERIC = Redactor()  # token=…, Authorization: … and hashes, with no configured values

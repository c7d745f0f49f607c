"""A byte-preserving editor for .env files.

Unify must change exactly one key's line in a file that also holds comments, other
secrets and Windows line endings: every other byte has to survive. So the file is kept as
its original lines (terminators included) and only the matched line is rebuilt.

Parsing follows what Docker Compose and python-dotenv agree on: `[export ]KEY=VALUE`,
single quotes are literal, double quotes allow escapes (and `$` interpolation in Compose),
an unquoted value ends at ` #` (an inline comment) and is stripped; the last duplicate wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_KEY_LINE = re.compile(r"^(?P<prefix>[ \t]*(?:export[ \t]+)?(?P<key>[A-Za-z_][A-Za-z0-9_.\-]*)"
                       r"[ \t]*=)(?P<rest>.*)$", re.DOTALL)


@dataclass(frozen=True)
class EnvEntry:
    """One `KEY=VALUE` line. `value` is what a dotenv reader returns; never print it."""

    index: int  # line number, 0-based
    key: str
    prefix: str  # everything up to and including "="
    raw: str  # the text after "=" without the line terminator
    value: str
    quote: str  # "", "'" or '"'
    closed: bool  # a quoted value found its closing quote
    comment: str  # trailing " # comment" kept verbatim ("" when none)
    outer_ws: bool  # unquoted value with trailing blanks, or blanks around the quotes

    def __repr__(self) -> str:  # the value is a secret: never in a repr or a traceback
        return f"EnvEntry(index={self.index}, key={self.key!r}, quote={self.quote!r})"


def split_lines(text: str) -> list[str]:
    """Lines with their terminators (only `\\n` ends a line; `\\r` stays with its line)."""
    if not text:
        return []
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _body(line: str) -> tuple[str, str]:
    """(content, terminator) of one line."""
    if line.endswith("\r\n"):
        return line[:-2], "\r\n"
    if line.endswith("\n"):
        return line[:-1], "\n"
    return line, ""


def parse_line(index: int, line: str) -> EnvEntry | None:
    content, _ = _body(line)
    stripped = content.lstrip()
    if not stripped or stripped.startswith("#"):
        return None
    m = _KEY_LINE.match(content)
    if not m:
        return None
    rest = m.group("rest")
    lead = rest[: len(rest) - len(rest.lstrip(" \t"))]
    body = rest[len(lead):]
    if body[:1] in ("'", '"'):
        q = body[0]
        end = _closing(body, q)
        if end is None:  # unbalanced: readers keep the quote as part of the value
            value = body.rstrip(" \t")
            return EnvEntry(index, m.group("key"), m.group("prefix"), rest, value, q, False,
                            "", bool(lead) or value != body)
        inner = body[1:end]
        if q == '"':
            inner = _unescape_double(inner)
        after = body[end + 1:]
        comment = after if after.lstrip(" \t").startswith("#") else ""
        return EnvEntry(index, m.group("key"), m.group("prefix"), rest, inner, q, True,
                        comment, bool(lead) or (not comment and bool(after)))
    cm = re.search(r"[ \t]+#", body)
    value_part = body[: cm.start()] if cm else body
    comment = body[cm.start():] if cm else ""
    value = value_part.rstrip(" \t")
    return EnvEntry(index, m.group("key"), m.group("prefix"), rest, value, "", True, comment,
                    bool(lead) or value != value_part)


def _closing(body: str, q: str) -> int | None:
    i = 1
    while i < len(body):
        c = body[i]
        if q == '"' and c == "\\":
            i += 2
            continue
        if c == q:
            return i
        i += 1
    return None


def _unescape_double(s: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m.group(1),
                                                                            m.group(1)), s)


def entries(text: str) -> list[EnvEntry]:
    out = []
    for i, line in enumerate(split_lines(text)):
        e = parse_line(i, line)
        if e is not None:
            out.append(e)
    return out


def find(text: str, key: str) -> list[EnvEntry]:
    """Every line that sets `key`, in file order (the last one is in force)."""
    return [e for e in entries(text) if e.key == key]


def format_value(value: str, *, compose: bool, quote: str | None = None) -> str:
    """The value as written. Files Compose reads get single quotes (literal: `$` survives);
    other files keep the line's own quoting (`quote`), single quotes when new."""
    if compose or quote is None or quote == "'":
        if "'" not in value and "\n" not in value:
            return f"'{value}'"
        quote = '"'
    if quote == "" and re.fullmatch(r"[^\s'\"#\\]*", value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    if compose:
        escaped = escaped.replace("$", "$$")
    return f'"{escaped}"'


def dominant_terminator(text: str) -> str:
    crlf = text.count("\r\n")
    return "\r\n" if crlf and crlf * 2 >= text.count("\n") else "\n"


def set_value(text: str, key: str, value: str, *, compose: bool = True,
              quote: str | None = None) -> str:
    """`text` with `key` set to `value`: the line in force is rebuilt (its `export`, inline
    comment and terminator kept), earlier duplicates are dropped, every other line is kept
    byte for byte, and a missing key is appended."""
    lines = split_lines(text)
    found = [e for e in entries(text) if e.key == key]
    new_value = format_value(value, compose=compose, quote=quote)
    if not found:
        term = dominant_terminator(text)
        if lines and not lines[-1].endswith("\n"):
            lines[-1] = lines[-1] + term
        lines.append(f"{key}={new_value}{term}")
        return "".join(lines)
    keep = found[-1]
    _, term = _body(lines[keep.index])
    prefix = re.sub(r"[ \t]*=$", "=", keep.prefix)
    comment = (" " + keep.comment.lstrip(" \t")) if keep.comment else ""
    lines[keep.index] = f"{prefix}{new_value}{comment}{term}"
    drop = {e.index for e in found[:-1]}
    return "".join(line for i, line in enumerate(lines) if i not in drop)

"""The one rule for putting untrusted text on one terminal line.

Names, images, states and details come from the config file, the Docker engine, HTTP
answers and files; any of them may hold an escape sequence (an OSC that retitles the pane,
a CSI that clears the screen), an 8-bit C1 control, a bidi override or an invisible
character. `one_line` is what every widget is handed, so the dashboard shows the same
cleaned text everywhere. It builds on `genai_tui.sources.logtext` (the container-log rules,
the strictest in the project): whole sequences are removed, not just their ESC byte, so no
`]0;pwned` or `[2J` residue is left either.

Pure and headless (no Textual, no Rich): the sources and the CLI can use it too. Markup is
not this module's job: the UI hands the result to `rich.text.Text`, never to a markup
parser.
"""

from __future__ import annotations

import re
import unicodedata

# the container-log grammar of terminal sequences (CSI, OSC, DCS/SOS/PM/APC in 7- and 8-bit
# forms, unterminated strings swallowed to the end) and of controls: reused, not re-invented
from genai_tui.secret import BCRYPT_ANYWHERE, fingerprint
from genai_tui.sources.logtext import _CONTROLS as _LOG_CONTROLS
from genai_tui.sources.logtext import _ESCAPES

__all__ = ["DEFAULT_MAX_LEN", "ELLIPSIS", "is_clean", "one_line", "redact", "shown"]

#: the cap when the caller gives none: one line never needs more
DEFAULT_MAX_LEN = 1024
ELLIPSIS = "…"
#: combining marks kept after one base character (more is "Zalgo" text that paints over
#: the rows above and below)
MAX_COMBINING = 3

# Breaks that a terminal would act on become one space: tab, LF, VT, FF, CR, FS..US, the C1
# NEL and the Unicode line/paragraph separators. Each piece between breaks is cleaned on its
# own, like a log line: an unterminated sequence swallows the rest of its line, not the
# lines after it.
_BREAKS = re.compile("[\t\n\x0b\x0c\r\x1c-\x1f\x85\u2028\u2029]")
# Invisible or reordering characters the log rules keep (a log line may legitimately hold
# them; a name may not): zero-width space/joiners, word joiner and invisible operators,
# soft hyphen, Mongolian vowel separator, BOM, interlinear annotations, tag characters.
_INVISIBLE = re.compile(
    "[\u00ad\u180e\u200b-\u200d\u2060-\u2064\u206a-\u206f\ufeff\ufff9-\ufffb"
    "\U000e0000-\U000e007f]"
)
#: categories never shown: controls, format characters (bidi, zero-width...), surrogates
_HIDDEN_CATEGORIES = frozenset(("Cc", "Cf", "Cs"))
#: ... and line/paragraph separators, which `one_line` turns into spaces
_UNCLEAN_CATEGORIES = _HIDDEN_CATEGORIES | {"Zl", "Zp"}


def one_line(text: object, max_len: int | None = None) -> str:
    """`text` as one printable line: escape sequences, C0/C1 controls, DEL, bidi controls,
    zero-width characters and lone surrogates removed; breaks and runs of blanks turned
    into one space; cut to `max_len` characters (default `DEFAULT_MAX_LEN`) with `…`.

    Never raises: bytes are decoded as UTF-8 with replacement, and an object whose `str()`
    fails is shown by its type name."""
    limit = DEFAULT_MAX_LEN if max_len is None else max(0, int(max_len))
    s = _as_str(text)
    # bound the work on a hostile megabyte; sequences removed below only shorten it
    cap = limit * 8 + 256
    if len(s) > cap:
        s = s[:cap]
    if not (s.isascii() and s.isprintable()):
        s = " ".join(map(_clean_piece, _BREAKS.split(s)))
    s = " ".join(s.split())
    if len(s) > limit:
        s = s[: limit - 1].rstrip() + ELLIPSIS if limit else ""
    return s


def redact(text: str) -> str:
    """Every bcrypt hash in `text` replaced by its fingerprint: the one way a hash is
    masked in messages, plans, the audit log and the UI (defence in depth for texts built
    from OS errors, file names and HTTP answers)."""
    return BCRYPT_ANYWHERE.sub(lambda m: fingerprint(m.group(0)), text)


def shown(text: object, limit: int = 200) -> str:
    """A name, path or message as the screen shows it: one clean line with every hash
    redacted (again after cleaning, for a hash an escape sequence had split)."""
    return one_line(redact(one_line(text, limit * 4)), limit)


def is_clean(text: str) -> bool:
    """True when no character of `text` could drive a terminal or hide itself: no control
    (ESC, C1, DEL, tab, newline...), no format character (bidi, zero-width), no surrogate.
    What the tests assert of anything rendered."""
    return not any(unicodedata.category(c) in _UNCLEAN_CATEGORIES or _INVISIBLE.match(c)
                   for c in text)


def _as_str(text: object) -> str:
    if isinstance(text, str):
        return text
    if isinstance(text, bytes | bytearray | memoryview):
        return bytes(text).decode("utf-8", "replace")
    try:
        return str(text)
    except Exception:  # a 5000-digit int, a broken __str__: say what it was, not crash
        return f"<{type(text).__name__}>"


def _clean_piece(s: str) -> str:
    """One piece without breaks: whole sequences, then single characters, removed."""
    if s.isascii() and s.isprintable():
        return s
    s = _ESCAPES.sub("", s)
    s = _LOG_CONTROLS.sub("", s)
    s = _INVISIBLE.sub("", s)
    return s if s.isascii() else _visible_unicode(s)


def _visible_unicode(s: str) -> str:
    """Drop what the regexes do not name by code point (any other format character, a
    surrogate) and cap stacked combining marks."""
    out: list[str] = []
    marks = 0
    for ch in s:
        if ch.isascii():
            out.append(ch)
            marks = 0
            continue
        cat = unicodedata.category(ch)
        if cat in _HIDDEN_CATEGORIES:
            continue
        if cat in ("Mn", "Me"):
            marks += 1
            if marks > MAX_COMBINING or not out:
                continue
        else:
            marks = 0
        out.append(ch)
    return "".join(out)

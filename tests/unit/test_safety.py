"""`genai_tui.safety.one_line` against a hostile corpus (issue 19, item 10): nothing that
can drive a terminal, reorder or hide text survives, and the visible words do."""

from __future__ import annotations

import time

import pytest

from genai_tui.safety import DEFAULT_MAX_LEN, ELLIPSIS, is_clean, one_line

#: (input, what one_line must give)
CORPUS = [
    # CSI, 7-bit: clear screen, colours, alt screen, cursor moves
    ("csi\x1b[2Jclear", "csiclear"),
    ("a\x1b[31;1mred\x1b[0m b", "ared b"),
    ("\x1b[?1049halt\x1b[H", "alt"),
    # OSC: window/pane title with BEL and with ST, hyperlink, clipboard, unterminated
    ("evil\x1b]0;pwned\x07", "evil"),
    ("evil\x1b]2;pwned\x1b\\name", "evilname"),
    ("\x1b]8;;https://evil.example/\x1b\\link\x1b]8;;\x1b\\ text", "link text"),
    ("clip\x1b]52;c;ZXZpbA==\x07board", "clipboard"),
    ("open\x1b]0;never ends", "open"),
    ("line one\x1b]0;unterminated\nline two", "line one line two"),  # one line swallowed
    # DCS, SOS, PM, APC
    ("d\x1bP+q544e\x1b\\cs", "dcs"),
    ("s\x1bXsos\x1b\\o\x1b^pm\x1b\\p\x1b_apc\x1b\\m", "sopm"),
    # 8-bit C1: CSI, OSC with ST, DCS, and a lone NEL (a line break)
    ("c1\x9b31mred", "c1red"),
    ("t\x9d0;title\x9cx", "tx"),
    ("d\x90data\x9cx", "dx"),
    ("line\x85next", "line next"),
    # two-char escapes and a lone ESC
    ("reset\x1bc!", "reset!"),
    ("charset\x1b(Bok", "charsetok"),
    ("end\x1b", "end"),
    # bidi embeddings, overrides, isolates, marks (Trojan Source)
    ("bidi\u202eabc\u202c", "bidiabc"),
    ("\u2066iso\u2069 \u200fmark\u200e \u061calm", "iso mark alm"),
    # zero-width and invisible characters
    ("zw\u200bsp\u200ca\u200dce\ufeff", "zwspace"),
    ("soft\u00adhy\u2060phen\u2062", "softhyphen"),
    ("tag\U000e0041\U000e007fs", "tags"),
    # NUL, DEL, other C0, tabs and newlines
    ("nul\x00del\x7fbel\x07bs\x08", "nuldelbelbs"),
    ("two\nlines\r\nand\ttab", "two lines and tab"),
    ("vt\x0bff\x0cfs\x1cus\x1f", "vt ff fs us"),
    ("para\u2028graph\u2029end", "para graph end"),
    ("   padded   words   ", "padded words"),
    # lone surrogates (from os.fsdecode of bad bytes, or a broken JSON \ud800 escape)
    ("sur\ud800ro\udcffgate", "surrogate"),
    # plain text is left alone
    ("comfyui-qwen", "comfyui-qwen"),
    ("ünïcödé ✓ 日本語", "ünïcödé ✓ 日本語"),
    ("[bold red]markup[/]", "[bold red]markup[/]"),  # markup is the UI's job: kept literal
]


@pytest.mark.parametrize(("raw", "expected"), CORPUS, ids=range(len(CORPUS)))
def test_one_line_cleans_the_corpus(raw: str, expected: str) -> None:
    out = one_line(raw)
    assert out == expected
    assert is_clean(out)
    out.encode("utf-8")  # no lone surrogate: the terminal writer can encode it


def test_bytes_and_objects_never_raise() -> None:
    assert one_line(b"bytes \xff\xfe \x1b[2Jok") == "bytes \ufffd\ufffd ok"
    assert one_line(None) == "None"
    assert one_line(42) == "42"

    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert one_line(Broken()) == "<Broken>"
    big = 10 ** 5000  # str() refuses ints past 4300 digits
    assert one_line(big) == "<int>"


def test_length_is_bounded_with_an_ellipsis() -> None:
    assert one_line("x" * 50, 10) == "x" * 9 + ELLIPSIS
    assert one_line("x" * 10, 10) == "x" * 10
    assert one_line("word " * 10, 8) == "word wo" + ELLIPSIS
    assert one_line("abc", 1) == ELLIPSIS
    assert one_line("abc", 0) == ""
    assert len(one_line("y" * 100_000)) == DEFAULT_MAX_LEN
    # the escapes are removed before the cut: they never count against the room left
    assert one_line("\x1b[31m" * 10 + "visible", 7) == "visible"


def test_huge_hostile_input_is_cheap() -> None:
    storm = "\x1b]0;" + "t" * 2_000_000 + "\x07" + "\x9b2J\u202e\u200b" * 200_000
    start = time.perf_counter()
    out = one_line(storm, 80)
    assert time.perf_counter() - start < 0.5
    assert is_clean(out) and len(out) <= 80


def test_zalgo_stacks_are_capped() -> None:
    out = one_line("z" + "\u0301" * 500 + "a")
    assert out == "z" + "\u0301" * 3 + "a"
    assert one_line("\u0301\u0301x") == "x"  # no mark without a base character


def test_is_clean_flags_what_one_line_removes() -> None:
    for raw, expected in CORPUS:
        if raw != expected and " ".join(raw.split()) != expected:
            assert not is_clean(raw), raw
    assert is_clean("plain text ✓")
    assert not is_clean("a\tb")

"""`genai-tui init`: propose a config from what the local Docker engine knows.

Prints the proposal as a table with each guess's evidence and as the TOML it would write
(or one JSON document with `--json`). Nothing is written without `--write PATH`, and then
only after `--yes` or a confirmation on a terminal; an existing file is first backed up.
Exit status: 0 a proposal (written when asked), 1 no ComfyUI found (the proposal is still
shown), 2 not written (refused, declined, failed), 3 the engine could not be asked.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genai_tui.safety import shown

if TYPE_CHECKING:  # every command builds the parser; only `init` needs discover
    from genai_tui.sources import discover

EXIT_OK, EXIT_NO_COMFYUI, EXIT_NOT_WRITTEN, EXIT_ENGINE = 0, 1, 2, 3


def add_parser(subparsers: Any, parents: Sequence[argparse.ArgumentParser] = ()
               ) -> argparse.ArgumentParser:
    """Register `init` on the main parser's subparsers."""
    p = subparsers.add_parser(
        "init", help="discover the services on this host and propose a config",
        description="Inspect the local Docker engine (containers, mounts, compose labels, "
        "published ports) and propose a genai-tui config: the services, the host path of "
        "each ComfyUI's login/PASSWORD and the .env keys that hold the credential. Nothing "
        "is written without --write.", parents=list(parents),
        epilog="Exit status: 0 proposal made, 1 no ComfyUI found, 2 not written, "
        "3 Docker engine unreachable.")
    p.add_argument("--write", type=Path, metavar="PATH",
                   help="write the proposed config there (an existing file is backed up "
                   "to PATH.bak.<timestamp> first)")
    p.add_argument("--yes", action="store_true", help="write without asking")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--project", action="append", default=[], metavar="NAME",
                   help="only containers of this compose project (repeatable)")
    p.add_argument("--docker-host", metavar="URL",
                   help="the engine to inspect (default: DOCKER_HOST, else the local socket)")
    return p


def run(args: argparse.Namespace, *, readonly: bool = False) -> int:
    """Discover, print, and write when asked."""
    from genai_tui.sources import discover

    target_: Path | None = getattr(args, "write", None)
    _fingerprint_key((target_.parent if target_ is not None else Path.cwd()).absolute(),
                     create=target_ is not None and bool(getattr(args, "yes", False))
                     and not readonly)
    proposal = discover.propose(getattr(args, "docker_host", None),
                                tuple(getattr(args, "project", None) or ()))
    target: Path | None = getattr(args, "write", None)
    config_dir = (target.parent if target is not None else Path.cwd()).absolute()
    text = discover.to_toml(proposal, config_dir) if not proposal.error else ""
    as_json = bool(getattr(args, "json", False))
    if proposal.error:
        if as_json:
            _out(json.dumps(proposal.to_json(), indent=2))
        else:
            _err(f"genai-tui init: {shown(proposal.error, 400)}")
        return EXIT_ENGINE
    code = EXIT_OK if proposal.comfyui else EXIT_NO_COMFYUI
    written: dict[str, Any] | None = None
    if target is not None:
        written = _write(text, target, yes=bool(getattr(args, "yes", False)),
                         readonly=readonly, quiet=as_json)
        if not written.get("written"):
            code = EXIT_NOT_WRITTEN
    if as_json:
        doc = proposal.to_json()
        doc["toml"] = text
        doc["write"] = written
        _out(json.dumps(doc, indent=2))
    else:
        _out(render(proposal, text))
        if written is not None:
            _out(written["message"])
    return code


def _fingerprint_key(config_dir: Path, *, create: bool) -> None:
    """Fingerprints under the key the written config's faces will use (its default
    state folder), so `tokens status` later shows the same `fp:`. It is created only
    with --write --yes; otherwise an existing key is used (nothing is written before the
    confirmation), else one valid for this run."""
    from genai_tui import secret

    state = config_dir / ".genai-tui"
    if create or (state / secret.KEY_FILE).is_file():
        secret.use_key_file(state)


def _write(text: str, target: Path, *, yes: bool, readonly: bool, quiet: bool
           ) -> dict[str, Any]:
    from genai_tui.sources import discover

    where = shown(target, 300)
    if readonly:
        return {"written": False, "path": str(target),
                "message": f"read-only mode: {where} not written"}
    if not yes:
        if quiet or not (sys.stdin.isatty() and sys.stdout.isatty()):
            return {"written": False, "path": str(target),
                    "message": f"{where} not written: give --yes (no terminal to ask on)"}
        exists = " (the current file is backed up first)" if os.path.lexists(target) else ""
        try:
            answer = input(f"write {where}{exists}? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            return {"written": False, "path": str(target), "message": f"{where} not written"}
    try:
        result = discover.write_config(text, target)
    except discover.WriteRefused as exc:
        return {"written": False, "path": str(target),
                "message": f"not written: {shown(str(exc), 400)}"}
    backup = f" (previous file kept as {shown(result.backup, 300)})" if result.backup else ""
    return {"written": True, "path": str(result.path),
            "backup": str(result.backup) if result.backup else None,
            "message": f"wrote {where}{backup}; check it with: genai-tui check --config "
            f"{where}"}


def render(p: discover.Proposal, text: str) -> str:
    """The proposal for a terminal: services and copies as tables, then the evidence,
    warnings, and the TOML it would write."""
    from genai_tui.sources import discover
    from genai_tui.textout import table

    out = [f"genai-tui init — Docker engine at {shown(p.engine, 200)}: "
           f"{discover.summary_line(p)}", ""]
    if p.services:
        out.append(table(["SERVICE", "KIND", "AUTH", "URL", "CONTAINER", "PROJECT"], [
            [shown(s.name, 40), s.kind, "yes" if s.auth else "no", shown(s.url or "-", 60),
             shown(s.container, 50), shown(s.project or "-", 30)] for s in p.services]))
        out.append("")
    if p.locations:
        out.append(table(["COPY", "FORMAT", "KEY", "STATE", "FINGERPRINT", "PATH"], [
            [shown(loc.name, 40) + ("*" if loc.name == p.canonical else ""), loc.format,
             shown(loc.key or "-", 30), loc.state, loc.fingerprint or "-",
             shown(loc.path, 100) + (" (outside project)" if loc.outside_project else "")]
            for loc in p.locations]))
        out.append("")
    out.append("evidence:")
    for s in p.services:
        for ev in s.evidence:
            out.append(f"  {shown(s.name, 40)}: {shown(ev, 300)}")
    for loc in p.locations:
        for ev in loc.evidence:
            out.append(f"  {shown(loc.name, 40)}: {shown(ev, 300)}")
    for a in p.ambiguous:
        cands = ", ".join(f"{shown(c, 60)} ({shown(pr, 40)})" for pr, c in a.candidates)
        out.append(f"  ambiguous {shown(a.service, 40)}: {cands}")
    for sk in p.skipped:
        out.append(f"  skipped {shown(sk, 300)}")
    if p.warnings:
        out.append("")
        out.extend(f"warning: {shown(w, 400)}" for w in p.warnings)
    out += ["", "proposed config (written only with --write PATH):", "", text.rstrip("\n")]
    return "\n".join(out)


def _out(text: str) -> None:
    print(text, flush=True)


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)

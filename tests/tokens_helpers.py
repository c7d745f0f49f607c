"""Real token files for the tokens tests: real bcrypt hashes (cost 4 unless a test needs
ComfyUI-Login's cost 12), every location format, and a config file to drive the CLI."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt

from genai_tui import config as configmod
from genai_tui.config import TokenLocation, TokensConfig


def hash_of(raw: str, cost: int = 4) -> str:
    return bcrypt.hashpw(raw.encode(), bcrypt.gensalt(cost)).decode()


def new_pair(cost: int = 4) -> tuple[str, str]:
    raw = secrets.token_urlsafe(32)
    return raw, hash_of(raw, cost)


@dataclass
class Stack:
    """A folder with one file per format, all holding `hash` (and `raw` for raw_env)."""

    root: Path
    raw: str
    hash: str
    locations: list[TokenLocation] = field(default_factory=list)
    canonical: str = "secrets"
    restart_after_unify: tuple[str, ...] = ()

    @property
    def tokens(self) -> TokensConfig:
        return TokensConfig(canonical=self.canonical, locations=tuple(self.locations),
                            restart_after_unify=self.restart_after_unify,
                            backup_dir=self.root / ".genai-tui" / "backups",
                            audit_log=self.root / ".genai-tui" / "audit.jsonl",
                            state_dir=self.root / ".genai-tui", root=self.root)

    def path(self, name: str) -> Path:
        return next(loc.path for loc in self.locations if loc.name == name)

    def secrets(self) -> list[str]:
        return [self.raw, self.hash]

    def snapshot(self) -> dict[str, bytes | None]:
        out: dict[str, bytes | None] = {}
        for loc in self.locations:
            out[str(loc.path)] = loc.path.read_bytes() if loc.path.is_file() else None
        return out


ENV_TEMPLATE = (
    "# stack settings\r\n"
    "COMFYUI_PORT=8188\r\n"
    "export SECRET_KEY='keep $me'   # not a token\r\n"
    "\r\n"
    "COMFYUI_API_TOKEN='{hash}'\r\n"
    "COMFYUI_RAW_TOKEN={raw}\r\n"
    "HF_TOKEN=hf_unrelated\r\n"
)


def make_stack(root: Path, raw: str | None = None, hash_: str | None = None) -> Stack:
    """Every format, consistent: hash file (canonical), PASSWORD, .env (hash and raw keys,
    CRLF, comments), a nested JSON key."""
    if raw is None or hash_ is None:
        raw, hash_ = new_pair()
    root.mkdir(parents=True, exist_ok=True)
    (root / ".secrets").mkdir(exist_ok=True)
    (root / "login").mkdir(exist_ok=True)
    files = {
        ".secrets/qwen-api-user.token": hash_ + "\n",
        "login/PASSWORD": f"{hash_}\nadmin",
        ".env": ENV_TEMPLATE.format(hash=hash_, raw=raw),
        ".secrets/comfyui_auth_tokens.conf": json.dumps(
            {"version": "1.0", "auth": {"bcrypt_hash": hash_, "user": "admin"},
             "locations": [".env"]}, indent=2) + "\n",
    }
    for rel, text in files.items():
        p = root / rel
        p.write_bytes(text.encode())
        p.chmod(0o600)
    locs = [
        TokenLocation("secrets", root / ".secrets/qwen-api-user.token", "hash_file"),
        TokenLocation("password", root / "login/PASSWORD", "password_file"),
        TokenLocation("env-main", root / ".env", "env", key="COMFYUI_API_TOKEN"),
        TokenLocation("env-raw", root / ".env", "raw_env", key="COMFYUI_RAW_TOKEN"),
        TokenLocation("conf", root / ".secrets/comfyui_auth_tokens.conf", "json",
                      key="auth.bcrypt_hash"),
    ]
    return Stack(root, raw, hash_, locs)


def write_config(stack: Stack, services: str = "", extra_tokens: str = "") -> Path:
    """A genai-tui.toml for `stack` in its root (paths relative to it)."""
    lines = [services.strip(), "", "[tokens]", f'canonical = "{stack.canonical}"']
    if stack.restart_after_unify:
        lines.append("restart_after_unify = [" + ", ".join(
            f'"{n}"' for n in stack.restart_after_unify) + "]")
    lines.append(extra_tokens.strip())
    for loc in stack.locations:
        lines.append("[[tokens.locations]]")
        lines.append(f'name = "{loc.name}"')
        lines.append(f'path = "{loc.path.relative_to(stack.root)}"')
        lines.append(f'format = "{loc.format}"')
        if loc.key:
            lines.append(f'key = "{loc.key}"')
        if not loc.compose:
            lines.append("compose = false")
    if not services.strip():
        lines.insert(0, '[[services]]\nname = "qwen"\nurl = "http://127.0.0.1:9"\n'
                     'kind = "comfyui"\ncontainer = "gtt-never-created"\nauth = true\n')
    path = stack.root / "genai-tui.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def load(path: Path) -> configmod.Config:
    return configmod.load_file(path, env={})


def leaks(text: str, secret_values: list[str], n: int = 8) -> list[str]:
    """The 8+ character pieces of any secret that occur in `text` (empty: no leak)."""
    found = []
    for value in secret_values:
        for i in range(0, max(1, len(value) - n + 1)):
            piece = value[i:i + n]
            if len(piece) == n and piece in text:
                found.append(piece)
                break
    return found

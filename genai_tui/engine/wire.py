"""The engine's snapshot as JSON lines: what `genai-tui stream --json` prints and what the
fleet view reads back over SSH.

One generic codec over the model's dataclasses (their type hints say how to read a field
back), so a new field crosses the link without a hand-written pair of functions. The
reading side is for untrusted input: a line that is not what the hints say is a
`WireError` with one clean sentence, never a traceback, and sizes are bounded.

Frames, one JSON object per line, each with `"type"`:
- `hello`: `protocol`, `version` (genai-tui's), `host` (its name), `readonly`, `config`
  (the public part of the remote's config: services, token locations, thresholds);
- `full` then `delta`: `parts` (part name → encoded value); a delta holds only the parts
  whose encoding changed since the last frame;
- `beat`: nothing changed (sent every `BEAT` seconds of silence: the reader's "stale");
- `refreshed`: a `refresh` command has had its round;
- `bye`: `reason` (the stream ends on purpose).
The reading side may write commands to the stream's stdin, one JSON object per line:
`{"cmd": "refresh", "part": null | "probes" | …}`. Actions never go this way: they are
`genai-tui` subcommands, so `--readonly` and every check apply as on the host itself.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import types
import typing
from datetime import datetime
from functools import cache
from pathlib import Path, PurePath
from typing import Any

from genai_tui import config as configmod
from genai_tui import model
from genai_tui.safety import one_line

#: bumped when a frame or a part changes in a way an older reader would misread
PROTOCOL = 1
#: seconds of silence after which the stream says it is alive
BEAT = 5.0
#: the longest line a reader accepts (a full frame of a large stack is ~100 KB)
MAX_LINE = 8 * 1024 * 1024
#: the most items a list (or keys a dict) may hold when read back
MAX_ITEMS = 20_000
#: the most characters a string may hold when read back
MAX_TEXT = 65_536
#: the parts a stream sends (log events stay on the host: findings already used them)
STREAM_PARTS = ("containers", "docker", "probes", "tokens", "gpu", "host", "findings",
                "jobs")
PART_TYPES: dict[str, Any] = {
    "containers": list[model.ContainerInfo],
    "docker": model.DockerStatus,
    "probes": list[model.ProbeResult],
    "tokens": model.TokensReport | None,
    "gpu": model.GpuReport | None,
    "host": model.HostInfo | None,
    "findings": list[model.Finding],
    "jobs": model.JobsReport | None,
}


class WireError(ValueError):
    """A line from the other side that cannot be read (said in one clean sentence)."""


# ---------------------------------------------------------------- encoding


def encode(value: Any) -> Any:
    """A model value as JSON-able data (datetimes as ISO 8601, enums as their value)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    raise TypeError(f"cannot encode {type(value).__name__}")


def dumps(frame: dict[str, Any]) -> str:
    """One frame as one line (no newline inside: JSON escapes them)."""
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# ---------------------------------------------------------------- decoding


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def decode(tp: Any, data: Any, where: str = "value") -> Any:
    """`data` read back as type `tp` (a model dataclass, a list of one, …); WireError
    when it is not that."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return data
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if data is None:
            if type(None) in args:
                return None
            raise WireError(f"{where}: missing")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return decode(arg, data, where)
            except WireError as exc:
                errors.append(exc)
        raise errors[0] if errors else WireError(f"{where}: unexpected value")
    if origin in (list, tuple):
        if not isinstance(data, list):
            raise WireError(f"{where}: expected a list")
        if len(data) > MAX_ITEMS:
            raise WireError(f"{where}: more than {MAX_ITEMS} items")
        args = typing.get_args(tp)
        if origin is list:
            return [decode(args[0], v, f"{where}[{i}]") for i, v in enumerate(data)]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(decode(args[0], v, f"{where}[{i}]") for i, v in enumerate(data))
        if len(args) != len(data):
            raise WireError(f"{where}: expected {len(args)} items")
        return tuple(decode(a, v, f"{where}[{i}]") for i, (a, v) in
                     enumerate(zip(args, data, strict=True)))
    if origin is dict or tp is dict:
        if not isinstance(data, dict):
            raise WireError(f"{where}: expected an object")
        if len(data) > MAX_ITEMS:
            raise WireError(f"{where}: more than {MAX_ITEMS} keys")
        args = typing.get_args(tp) or (str, Any)
        return {decode(args[0], k, where): decode(args[1], v, f"{where}.{one_line(k, 40)}")
                for k, v in data.items()}
    if isinstance(tp, type):
        if dataclasses.is_dataclass(tp):
            return _dataclass(tp, data, where)
        if issubclass(tp, enum.Enum):
            try:
                return tp(data)
            except ValueError:
                raise WireError(f"{where}: unknown value") from None
        if tp is bool:
            if isinstance(data, bool):
                return data
        elif tp is int:
            if isinstance(data, int) and not isinstance(data, bool):
                return data
        elif tp is float:
            if isinstance(data, int | float) and not isinstance(data, bool):
                return float(data)
        elif tp is str:
            if isinstance(data, str):
                if len(data) > MAX_TEXT:
                    raise WireError(f"{where}: text longer than {MAX_TEXT} characters")
                return data
        elif tp is datetime:
            if isinstance(data, str) and len(data) < 64:
                try:
                    return datetime.fromisoformat(data)
                except ValueError:
                    pass
            raise WireError(f"{where}: not a date")
        elif issubclass(tp, PurePath):
            return Path(decode(str, data, where))
        else:
            raise WireError(f"{where}: cannot read a {tp.__name__}")
        raise WireError(f"{where}: expected {tp.__name__}")
    raise WireError(f"{where}: unexpected type")


def _dataclass(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise WireError(f"{where}: expected an object")
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = decode(hints[f.name], data[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise WireError(f"{where}: {f.name} missing")
        # unknown keys are ignored: a newer genai-tui may send more
    return cls(**kwargs)


def loads(line: str | bytes) -> dict[str, Any]:
    """One frame from a line; WireError when it is not one."""
    if len(line) > MAX_LINE:
        raise WireError(f"a line longer than {MAX_LINE // (1024 * 1024)} MiB")
    try:
        frame = json.loads(line)
    except (ValueError, RecursionError):
        raise WireError("a line that is not JSON") from None
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise WireError("a JSON line that is not a frame")
    return frame


def decode_parts(frame: dict[str, Any]) -> dict[str, Any]:
    """The parts of a full or delta frame, read back (unknown parts are skipped)."""
    parts = frame.get("parts")
    if not isinstance(parts, dict):
        raise WireError("a frame without parts")
    return {name: decode(PART_TYPES[name], value, name)
            for name, value in parts.items() if name in PART_TYPES}


# ---------------------------------------------------------------- the config, in public


@dataclasses.dataclass(frozen=True)
class PublicConfig:
    """What a face needs of the host's config to draw its panels: no alert hook (a
    webhook URL can hold a token), no restart command, no state or backup paths."""

    path: str | None
    services: tuple[configmod.ServiceConfig, ...]
    token_locations: tuple[configmod.TokenLocation, ...] = ()
    canonical: str | None = None
    restart_after_unify: tuple[str, ...] = ()
    jobs: configmod.JobsConfig = dataclasses.field(default_factory=configmod.JobsConfig)
    gpu: configmod.GpuConfig = dataclasses.field(default_factory=configmod.GpuConfig)
    host: configmod.HostConfig = dataclasses.field(default_factory=configmod.HostConfig)
    probes: configmod.ProbeConfig = dataclasses.field(default_factory=configmod.ProbeConfig)


def public_config(cfg: configmod.Config) -> dict[str, Any]:
    services = tuple(dataclasses.replace(s, restart_command=None) for s in cfg.services)
    return encode(PublicConfig(
        path=str(cfg.path) if cfg.path else None, services=services,
        token_locations=cfg.tokens.locations, canonical=cfg.tokens.canonical,
        restart_after_unify=cfg.tokens.restart_after_unify, jobs=cfg.jobs, gpu=cfg.gpu,
        host=cfg.host, probes=cfg.probes))


def config_from_public(data: Any, local: configmod.Config) -> configmod.Config:
    """The host's config as far as a face needs it, with our own keys (`[keys]`) and no
    history, alert or token state of ours."""
    pub = decode(PublicConfig, data, "config")
    return configmod.Config(
        services=pub.services,
        tokens=configmod.TokensConfig(canonical=pub.canonical,
                                      restart_after_unify=pub.restart_after_unify,
                                      locations=pub.token_locations),
        jobs=pub.jobs, gpu=pub.gpu, host=pub.host, probes=pub.probes, keys=local.keys,
        history=configmod.HistoryConfig(enabled=False),
        path=Path(pub.path) if pub.path else None)

"""Turn the raw windows of a bench run into figures, ratios, targets and Markdown."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

KEY_TIMEOUT_MS = 10_000.0
#: a window where other jobs used more than this share of the host is flagged as noisy
NOISY_PCT = 15.0


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _rate(windows: list[dict[str, Any]]) -> float | None:
    """Mean engine CPU seconds per second over baseline windows."""
    rates = [w["engine_cpu_s"] / w["seconds"] for w in windows if w.get("seconds")]
    return statistics.mean(rates) if rates else None


def _idle(w: dict[str, Any] | None, base_rate: float | None, prefix: str) -> dict[str, Any]:
    if not w or w.get("tool_cpu_s") is None:
        return {}
    k = 60.0 / w["seconds"]
    own = w["tool_cpu_s"] * k
    out: dict[str, Any] = {
        f"{prefix}_own_cpu_s": own,
        f"{prefix}_peak_rss_mb": w["tool_peak_rss_mb"],
        f"{prefix}_engine_cpu_s": w["engine_cpu_s"] * k,
        f"{prefix}_host_busy_pct": w["host_busy_pct"],
    }
    if base_rate is not None:
        induced = (w["engine_cpu_s"] - base_rate * w["seconds"]) * k
        out[f"{prefix}_induced_cpu_s"] = induced
        out[f"{prefix}_total_cpu_s"] = own + max(induced, 0.0)
    return out


def _tool_figures(res: dict[str, Any], baselines: dict[str, Any]) -> dict[str, Any]:
    f: dict[str, Any] = {}
    starts = [s["seconds"] for s in res.get("startup", []) if s["phase"] != "scale"]
    if starts:
        f["startup_median_s"] = _median(starts)
        f["startup_max_s"] = max(starts)
        f["startup_n"] = len(starts)
    scale_starts = [s["seconds"] for s in res.get("startup", []) if s["phase"] == "scale"]
    if scale_starts:
        f["scale_startup_s"] = scale_starts[0]
    f.update(_idle(res.get("idle"), _rate(baselines.get("stack", [])), "idle"))
    f.update(_idle(res.get("scale"), _rate(baselines.get("scale", [])), "scale"))

    ev = res.get("events") or {}
    lat = [s["latency_ms"] for s in ev.get("samples", []) if s.get("latency_ms") is not None]
    if ev.get("samples"):
        f["events_n"] = len(lat)
        f["events_missed"] = len(ev["samples"]) - len(lat)
        if lat:
            f["events_median_ms"] = _median(lat)
            f["events_max_ms"] = max(lat)
        for action in ("stop", "start"):
            xs = [s["latency_ms"] for s in ev["samples"]
                  if s["action"] == action and s.get("latency_ms") is not None]
            if xs:
                f[f"events_{action}_median_ms"] = _median(xs)

    fl = res.get("flood") or {}
    w = fl.get("window")
    if w and w.get("tool_cpu_s") is not None:
        f["flood_cpu_s"] = w["tool_cpu_s"]
        f["flood_cpu_pct"] = 100.0 * w["tool_cpu_s"] / w["seconds"]
        f["flood_peak_rss_mb"] = w["tool_peak_rss_mb"]
        f["flood_engine_cpu_s"] = w["engine_cpu_s"]
        f["flood_host_busy_pct"] = w["host_busy_pct"]
        series = w.get("rss_series_mb") or []
        if series:
            half = w["seconds"] / 2
            second = [r for t, r in series if t >= half]
            if second:
                f["flood_rss_growth_mb"] = second[-1] - second[0]
            f["flood_rss_start_mb"] = series[0][1]
            f["flood_rss_end_mb"] = series[-1][1]
        after = fl.get("after") or {}
        if after.get("tool_peak_rss_mb") is not None:
            f["flood_rss_after_mb"] = after["rss_series_mb"][-1][1] \
                if after.get("rss_series_mb") else after["tool_peak_rss_mb"]
    keys = fl.get("keys") or []
    if keys:
        opened = [k["open_ms"] if k.get("open_ms") is not None else KEY_TIMEOUT_MS
                  for k in keys]
        f["flood_key_median_ms"] = _median(opened)
        f["flood_key_max_ms"] = max(opened)
        f["flood_key_n"] = len(opened)
        closed = [k["close_ms"] for k in keys if k.get("close_ms") is not None]
        if closed:
            f["flood_close_median_ms"] = _median(closed)
    before = [k["open_ms"] for k in fl.get("keys_before") or [] if k.get("open_ms")]
    if before:
        f["idle_key_median_ms"] = _median(before)
    for mode, key in (("plain", "bytes_kb"), ("ssh", "bytes_ssh_kb")):
        b = (res.get("bytes") or {}).get(mode)
        if b and b.get("seconds"):
            f[key] = b["per_60s"] / 1000.0
    runs = [r for r in (res.get("check") or {}).get("runs", []) if r.get("cpu_s") is not None]
    if runs:
        f["check_cpu_s"] = _median([r["cpu_s"] for r in runs])
        f["check_wall_s"] = _median([r["wall_s"] for r in runs])
        f["check_rss_mb"] = _median([r["max_rss_mb"] for r in runs])
        f["check_n"] = len(runs)
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in f.items()}


#: (figure key, label, format) in table order
ROWS: list[tuple[str, str, str]] = [
    ("startup_median_s", "Startup → first complete screen, median (s)", "{:.2f}"),
    ("startup_max_s", "Startup, max (s)", "{:.2f}"),
    ("idle_own_cpu_s", "Idle 60 s: own CPU (s)", "{:.2f}"),
    ("idle_induced_cpu_s", "Idle 60 s: CPU induced in the engine (s)", "{:.2f}"),
    ("idle_total_cpu_s", "Idle 60 s: own + induced (s)", "{:.2f}"),
    ("idle_peak_rss_mb", "Idle: peak RSS (MB)", "{:.0f}"),
    ("bytes_kb", "Idle: bytes to the terminal per 60 s (KB, pty 120×40)", "{:.0f}"),
    ("bytes_ssh_kb", "Idle: bytes to the terminal per 60 s with SSH_CONNECTION (KB)",
     "{:.0f}"),
    ("check_cpu_s", "`check` one-shot: CPU, median of 5 (s)", "{:.2f}"),
    ("check_wall_s", "`check` one-shot: wall, median of 5 (s)", "{:.2f}"),
    ("check_rss_mb", "`check` one-shot: peak RSS, median (MB)", "{:.0f}"),
    ("events_median_ms", "Event → screen, median (ms)", "{:.0f}"),
    ("events_max_ms", "Event → screen, max (ms)", "{:.0f}"),
    ("flood_cpu_s", "Log flood 30 s: own CPU (s)", "{:.1f}"),
    ("flood_peak_rss_mb", "Log flood: peak RSS (MB)", "{:.0f}"),
    ("flood_rss_growth_mb", "Log flood: RSS growth over its 2nd half (MB)", "{:+.1f}"),
    ("flood_key_median_ms", "Log flood: key → visible, median (ms)", "{:.0f}"),
    ("flood_key_max_ms", "Log flood: key → visible, max (ms)", "{:.0f}"),
    ("flood_close_median_ms", "Log flood: closing key → visible, median (ms)", "{:.0f}"),
    ("idle_key_median_ms", "No flood: key → visible, median (ms)", "{:.0f}"),
    ("flood_engine_cpu_s", "Log flood: engine CPU, all causes (s)", "{:.1f}"),
    ("scale_own_cpu_s", "Scale, 60 s: own CPU (s)", "{:.2f}"),
    ("scale_induced_cpu_s", "Scale, 60 s: CPU induced in the engine (s)", "{:.2f}"),
    ("scale_total_cpu_s", "Scale, 60 s: own + induced (s)", "{:.2f}"),
    ("scale_peak_rss_mb", "Scale: peak RSS (MB)", "{:.0f}"),
    ("scale_startup_s", "Scale: startup → first complete screen (s)", "{:.2f}"),
]

#: (genai-tui, lazydocker, floor) figures -> met? (None: a figure is missing)
Check = Callable[[dict[str, Any], dict[str, Any], dict[str, Any]], bool | None]


def _ratio_at_most(key: str, limit: float) -> Check:
    def check(g: dict[str, Any], lz: dict[str, Any], _fl: dict[str, Any]) -> bool | None:
        if g.get(key) is None or not lz.get(key):
            return None
        return g[key] / lz[key] <= limit
    return check


def _floor_at_most(key: str, limit: float) -> Check:
    def check(g: dict[str, Any], _lz: dict[str, Any], fl: dict[str, Any]) -> bool | None:
        if g.get(key) is None or not fl.get(key):
            return None
        return g[key] / fl[key] <= limit
    return check


def _not_worse(key: str) -> Check:
    return _ratio_at_most(key, 1.0)


def _below(key: str, limit: float) -> Check:
    def check(g: dict[str, Any], _lz: dict[str, Any], _fl: dict[str, Any]) -> bool | None:
        return None if g.get(key) is None else g[key] <= limit
    return check


def _all(*checks: Check) -> Check:
    def check(g: dict[str, Any], lz: dict[str, Any], fl: dict[str, Any]) -> bool | None:
        got = [c(g, lz, fl) for c in checks]
        if False in got:
            return False
        return None if None in got else True
    return check


#: figure key -> (target text, check): the targets of issue #17
TARGETS: dict[str, tuple[str, Check]] = {
    "startup_median_s": ("≤ 0.45 s", _below("startup_median_s", 0.45)),
    "idle_own_cpu_s": ("≤ 1.3× floor and ≤ lazydocker", _all(
        _floor_at_most("idle_own_cpu_s", 1.3), _not_worse("idle_own_cpu_s"))),
    "idle_total_cpu_s": ("≤ ⅓ of lazydocker", _ratio_at_most("idle_total_cpu_s", 1 / 3)),
    "idle_peak_rss_mb": ("≤ 50 MB", _below("idle_peak_rss_mb", 50)),
    "bytes_kb": ("≤ ½ of lazydocker", _ratio_at_most("bytes_kb", 1 / 2)),
    "bytes_ssh_kb": ("≤ 150 KB", _below("bytes_ssh_kb", 150)),
    "check_cpu_s": ("≤ 0.3 s", _below("check_cpu_s", 0.3)),
    "events_median_ms": ("≤ ½ of lazydocker", _ratio_at_most("events_median_ms", 1 / 2)),
    "flood_cpu_s": ("≤ ¼ of lazydocker", _ratio_at_most("flood_cpu_s", 1 / 4)),
    "flood_peak_rss_mb": ("< 150 MB", _below("flood_peak_rss_mb", 150)),
    "flood_rss_growth_mb": ("flat (< 10 MB)", _below("flood_rss_growth_mb", 10)),
    "flood_key_max_ms": ("≤ 100 ms", _below("flood_key_max_ms", 100.0)),
    "scale_total_cpu_s": ("≤ 1/10 of lazydocker", _ratio_at_most("scale_total_cpu_s", 0.1)),
}


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    baselines = results.get("baselines", {})
    figures = {name: _tool_figures(res, baselines)
               for name, res in results.get("tools", {}).items()}
    g = figures.get("genai-tui", {})
    lz = figures.get("lazydocker", {})
    fl = figures.get("floor", {})
    ratios = {}
    floor_ratios = {}
    for key, _label, _fmt in ROWS:
        if g.get(key) is not None and lz.get(key):
            ratios[key] = round(g[key] / lz[key], 3)
        if g.get(key) is not None and fl.get(key):
            floor_ratios[key] = round(g[key] / fl[key], 3)
    targets = {}
    for key, (text, check) in TARGETS.items():
        targets[key] = {"target": text, "met": check(g, lz, fl)}
    noise = {
        name: [{"label": w["label"], "engine_cpu_per_60s": round(
            w["engine_cpu_s"] * 60 / w["seconds"], 2), "host_busy_pct": w["host_busy_pct"]}
            for w in windows]
        for name, windows in baselines.items()
    }
    others = []
    for key, windows in baselines.items():
        others += [(f"baseline {key} {w['label']}", w.get("other_cpu_pct")) for w in windows]
    for name, res in results.get("tools", {}).items():
        for key in ("idle", "scale"):
            if res.get(key):
                others.append((f"{name} {key}", res[key].get("other_cpu_pct")))
        if (res.get("flood") or {}).get("window"):
            others.append((f"{name} flood", res["flood"]["window"].get("other_cpu_pct")))
    others = [(k, v) for k, v in others if v is not None]
    return {"figures": figures, "ratios": ratios, "floor_ratios": floor_ratios,
            "targets": targets, "baselines": noise,
            "other_cpu_pct": dict(others),
            "noisy": any(v > NOISY_PCT for _k, v in others)}


def _fmt(value: Any, fmt: str) -> str:
    if value is None:
        return "–"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def table(results: dict[str, Any]) -> str:
    summary = results.get("summary") or summarise(results)
    figs = summary["figures"]
    g = figs.get("genai-tui", {})
    lz = figs.get("lazydocker", {})
    fl = figs.get("floor", {})
    lines = ["| Figure | genai-tui | lazydocker | Textual floor | genai-tui / lazydocker | "
             "genai-tui / floor | Target | Met |",
             "|---|--:|--:|--:|--:|--:|---|:-:|"]
    for key, label, fmt in ROWS:
        if g.get(key) is None and lz.get(key) is None:
            continue
        ratio = summary["ratios"].get(key)
        floor_ratio = (summary.get("floor_ratios") or {}).get(key)
        target = summary["targets"].get(key, {})
        met = {True: "yes", False: "**no**", None: "–"}[target.get("met")] if target else ""
        lines.append(f"| {label} | {_fmt(g.get(key), fmt)} | {_fmt(lz.get(key), fmt)} | "
                     f"{_fmt(fl.get(key), fmt)} | {_fmt(ratio, '{:.2f}')} | "
                     f"{_fmt(floor_ratio, '{:.2f}')} | {target.get('target', '')} | {met} |")
    return "\n".join(lines)


def details(results: dict[str, Any]) -> str:
    meta = results.get("meta", {})
    summary = results.get("summary") or summarise(results)
    out = []
    out.append(f"- Machine: {meta.get('cpu_count')} CPUs ({meta.get('cpu_model')}), "
               f"{meta.get('memory_gb')} GB, kernel {meta.get('kernel')}; "
               f"Docker engine {meta.get('docker_engine')}; {meta.get('tmux')} "
               f"({meta.get('terminal')}); Python {meta.get('python')}, "
               f"Textual {meta.get('textual')}.")
    tools = meta.get("tools", {})
    out.append("- Versions: " + "; ".join(f"{k} {v}" for k, v in tools.items()) + ".")
    s = results.get("settings", {})
    scale = results.get("scale", {})
    out.append(f"- Stack: the 4 simulated services of `genai-tui demo` (healthchecks every "
               f"10 s) + {s.get('idle_containers')} idle containers + 1 log-flood container"
               f" (scale step: {scale.get('idle_containers', '–')} idle containers). "
               f"Idle window {s.get('idle_s'):.0f} s; baselines 2 × "
               f"{s.get('baseline_s'):.0f} s; {s.get('events')} events; flood "
               f"{s.get('flood_rate')} lines/s for {s.get('flood_s'):.0f} s.")
    for name, figs in summary["figures"].items():
        extra = []
        if "events_stop_median_ms" in figs:
            extra.append(f"event medians stop {figs['events_stop_median_ms']:.0f} ms / "
                         f"start {figs.get('events_start_median_ms', float('nan')):.0f} ms "
                         f"({figs.get('events_n')} seen, {figs.get('events_missed')} missed)")
        if "flood_cpu_pct" in figs:
            extra.append(f"flood CPU {figs['flood_cpu_pct']:.0f}% of a core, RSS "
                         f"{figs.get('flood_rss_start_mb', 0):.0f} → "
                         f"{figs.get('flood_rss_end_mb', 0):.0f} MB, "
                         f"{figs.get('flood_rss_after_mb', 0):.0f} MB 10 s later")
        if "idle_engine_cpu_s" in figs:
            extra.append(f"engine CPU while idle {figs['idle_engine_cpu_s']:.2f} s/60 s "
                         f"(host busy {figs.get('idle_host_busy_pct', 0):.0f}%)")
        fl = results["tools"].get(name, {}).get("flood", {})
        if fl.get("mid_view") or fl.get("end_view"):
            extra.append(f"log view mid-flood: {fl.get('mid_view') or '?'}; at the end: "
                         f"{fl.get('end_view') or '?'}")
        errors = results["tools"].get(name, {}).get("errors") or []
        if errors:
            extra.append("errors: " + "; ".join(errors))
        if extra:
            out.append(f"- {name}: " + "; ".join(extra) + ".")
    other = summary.get("other_cpu_pct") or {}
    if other:
        worst = max(other, key=lambda k: other[k])
        out.append(f"- Noise: CPU used by other jobs (neither the tool, the engine nor the "
                   f"bench) during the windows: {min(other.values()):.0f}–"
                   f"{max(other.values()):.0f}% of the host (worst: {worst}).")
    disturbed = []
    for key, windows in (results.get("baselines") or {}).items():
        disturbed += [f"baseline {key} {w['label']}: {w['foreign_events']}" for w in windows
                      if w.get("foreign_events")]
    for name, res in (results.get("tools") or {}).items():
        disturbed += [f"{name} {k}: {res[k]['foreign_events']}" for k in ("idle", "scale")
                      if (res.get(k) or {}).get("foreign_events")]
    if disturbed:
        out.append("- Container events of other jobs during engine windows (even after a "
                   "retry): " + "; ".join(disturbed) + ".")
    waits = results.get("waits") or []
    waited = sum(w["waited_s"] for w in waits)
    if waited > 5:
        out.append(f"- Waited {waited:.0f} s in all for a calm host before measuring.")
    for key, windows in summary["baselines"].items():
        out.append(f"- Baseline ({key}), no tool running: " + "; ".join(
            f"{w['label']}: engine {w['engine_cpu_per_60s']:.2f} CPU s/60 s, host busy "
            f"{w['host_busy_pct']:.0f}%" for w in windows) + ".")
    return "\n".join(out)


def markdown(results: dict[str, Any]) -> str:
    meta = results.get("meta", {})
    head = [f"## genai-tui beside lazydocker — {meta.get('date', '?')}", "",
            f"`{meta.get('command', 'python -m tests.bench.run')}` "
            f"({meta.get('duration_s', 0):.0f} s)"]
    if meta.get("quick"):
        head.append("\n**Quick smoke run: short windows, figures are indicative only.**")
    if (results.get("summary") or {}).get("noisy"):
        head.append(f"\n**Noisy run: other jobs used more than {NOISY_PCT:.0f}% of the host "
                    "in some windows (see Noise below); compare ratios, not absolutes.**")
    if meta.get("profiled"):
        head.append("\n**Profiled run (py-spy attached to genai-tui): not comparable.**")
    return "\n".join(head + ["", table(results), "", details(results), ""])


METHOD = """\
## How it is measured

- **Same run, same stack, one tool at a time**, each in its own tmux session (120×40) on a
  private tmux server; screens are read with `tmux capture-pane` (plain text).
- **CPU** = user + system seconds from `/proc` (psutil) of the tool's process tree, and of
  `dockerd`, `containerd`, every `containerd-shim` and `docker-proxy` for the engine.
  *Induced* engine CPU = engine CPU during the tool's window − the engine's mean rate in
  the baseline windows (no tool running) × the window length; it can come out slightly
  negative when the host is noisy. Idle figures are per 60 s.
- **Event latency**: `docker stop` / `docker start` of a stack container; from the
  engine's own event timestamp (`die` / `start`, `timeNano`) to the first screen capture
  showing the new state (polled every 10 ms, so about ±10 ms). lazydocker's list is
  filtered to that container (`/`), since with 20+ containers a stopped one sinks below
  the fold; genai-tui shows it in its containers table.
- **Log flood**: the simulator's `log_flood` scenario (ComfyUI-like lines, ANSI colours,
  `\\r` progress bars, 10–40 KB lines) in a container whose log the tool follows
  (genai-tui: `l` on its row; lazydocker: the container selected, Logs tab). Key press =
  a popup whose text is detectable: genai-tui `?` (help), lazydocker `x` (menu); timed
  from `tmux send-keys` to the first capture showing it, every 4 s during the flood.
- **Startup**: `tmux new-session` to the first capture where the container list is filled
  (genai-tui: every configured service has a state; lazydocker: its Containers panel lists
  containers), over every start of the run except the scale step.
- **Textual floor**: `tests/bench/floor_app.py`, a minimal Textual app (header, a 20-row
  DataTable whose age column is rewritten once a second, footer), measured like the tools
  where the figure is the tool's own cost (idle CPU, RSS, startup, bytes): the least a
  Textual dashboard costs on this host, so each ratio is read against the physical limit
  as well as against the peer.
- **Bytes to the terminal**: the tool alone on a pty of its own (120×40, TERM
  xterm-256color, no tmux in between), left `settle + 3 s`, then every byte it writes is
  counted over the idle window, per 60 s; once plain and once with `SSH_CONNECTION` set.
- **`check`**: `genai-tui check --config <stack>` run 5 times in a row on the stack (the
  verdict cache warm after the first), CPU = the process's user + system rusage.
- **As installed**: the runner byte-compiles `genai_tui/` first (`compileall`), as
  `pip install` does; Textual in site-packages already is. Otherwise every start would
  compile ~22 000 lines again wherever PYTHONDONTWRITEBYTECODE is set.
- **Noise**: the machine has 2 CPUs and other jobs may run; the host's busy % in each
  window and both baselines are listed so a disturbed run can be recognised.
"""


def _public_command(command: str) -> str:
    """The command without `--out DIR` (where results go changes no figure)."""
    words = command.split()
    out = []
    skip = False
    for w in words:
        if skip:
            skip = False
            continue
        if w == "--out":
            skip = True
            continue
        if w.startswith("--out="):
            continue
        out.append(w)
    return " ".join(out)


def benchmarks_md(results: dict[str, Any]) -> str:
    meta = results.get("meta", {})
    return "\n".join([
        "# Benchmarks: genai-tui beside lazydocker",
        "",
        "Produced by the bench runner (`tests/bench/`, see its README), from the repository "
        "root:",
        "",
        "```sh",
        _public_command(meta.get("command", "python -m tests.bench.run").strip()),
        "```",
        "",
        markdown(results),
        METHOD,
    ])

"""The fleet's cost per remote host: the local fleet screen's CPU (its process and the ssh
clients it runs) over an idle minute, and the bytes an idle host sends over SSH.

    python -m tests.bench.bench_fleet [--seconds 60] [--hosts 0,1,4]

Needs root, sshd, dockerd (a real sshd on loopback and a second Docker engine are started,
from tests/integration/fleet_infra.py). Each run opens the fleet screen in tmux (120×40)
with N hosts (all the same "host b" over one sshd, each with its own stream and
ControlMaster: N real SSH connections), waits for every row to be live, then measures.
Bytes are the TCP bytes the sshd port sent (`ss -ti`: compressed, as on the wire) and the
JSON bytes the streams printed (uncompressed).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from tests.integration import fleet_infra


def cpu_of(root: int) -> float:
    total = 0.0
    try:
        procs = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
    except psutil.Error:
        return 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def ssh_cpu(folder: str, root: int) -> float:
    """CPU of the ssh masters whose ControlPath is in `folder` (they fork off, so they are
    not in the screen's process tree; the stream clients are)."""
    try:
        mine = {p.pid for p in psutil.Process(root).children(recursive=True)}
    except psutil.Error:
        mine = set()
    total = 0.0
    for p in psutil.process_iter(["name", "cmdline"]):
        if p.pid not in mine and p.info["name"] == "ssh" \
                and any(folder in a for a in p.info["cmdline"] or []):
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
    return total


def sent_bytes(port: int) -> int:
    """Bytes the sshd on `port` has sent on its live connections (as TCP counts them)."""
    out = subprocess.run(["ss", "-tinH", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True, check=False).stdout
    return sum(int(m) for m in re.findall(r"bytes_acked:(\d+)", out))


def one(n: int, seconds: float, server, stack, tmp: Path) -> dict[str, float]:
    cfg = tmp / f"fleet-{n}.toml"
    lines = ['[[services]]\nname = "x"\nurl = "http://127.0.0.1:9"\nkind = "http"\n',
             "[fleet]\nlocal = false\n"]
    for i in range(n):
        lines.append(f'[[hosts]]\nname = "b{i}"\nssh = "{server.alias}"\n'
                     f'ssh_config = "{server.config_path}"\nconfig = "{stack.config_path}"\n'
                     f'command = ["{fleet_infra.genai_tui_path()}"]\n')
    cfg.write_text("\n".join(lines))
    sock = tmp / "tmux.sock"
    exe = Path(sys.executable).with_name("genai-tui")
    subprocess.run(["tmux", "-S", str(sock), "new-session", "-d", "-x", "120", "-y", "40",
                    f"{exe} --config {cfg}"], check=True)
    try:
        pid = int(subprocess.run(["tmux", "-S", str(sock), "list-panes", "-F",
                                  "#{pane_pid}"], capture_output=True, text=True,
                                 check=True).stdout.split()[0])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            screen = subprocess.run(["tmux", "-S", str(sock), "capture-pane", "-p"],
                                    capture_output=True, text=True).stdout
            if screen.count(" live ") >= n:
                break
            time.sleep(0.5)
        time.sleep(10)  # first frames and warm-up done
        folders = {a for p in psutil.process_iter(["name", "cmdline"])
                   if p.info["name"] == "ssh" for a in p.info["cmdline"] or []
                   if "genai-tui-ssh-" in a}
        folder = next(iter(folders), "genai-tui-ssh-")
        folder = folder[:folder.find("genai-tui-ssh-") + 22]
        c0, s0, b0 = cpu_of(pid), ssh_cpu(folder, pid), sent_bytes(server.port)
        time.sleep(seconds)
        c1, s1, b1 = cpu_of(pid), ssh_cpu(folder, pid), sent_bytes(server.port)
        return {"hosts": n, "cpu_s": c1 - c0, "ssh_cpu_s": s1 - s0,
                "wire_bytes_per_min": (b1 - b0) * 60 / seconds}
    finally:
        subprocess.run(["tmux", "-S", str(sock), "kill-server"], check=False)
        time.sleep(2)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--hosts", default="0,1,4")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gtbf-"))
    engine = fleet_infra.SecondEngine()
    engine.start()
    server = fleet_infra.SshServer()
    try:
        server.start()
        stack = fleet_infra.start_sim_stack(engine, tmp / "hostb", "gtfleet-bench-")
        # the JSON one idle host streams, uncompressed, for comparison
        proc = subprocess.Popen(server.ssh_argv(str(fleet_infra.genai_tui_path()),
                                                "--config", str(stack.config_path),
                                                "stream", "--json"),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        time.sleep(10)
        start, got = time.monotonic(), 0
        import os
        os.set_blocking(proc.stdout.fileno(), False)
        while time.monotonic() - start < args.seconds:
            chunk = proc.stdout.read(65536)
            got += len(chunk or b"")
            time.sleep(0.2)
        proc.kill()
        json_per_min = got * 60 / args.seconds
        rows = [one(int(n), args.seconds, server, stack, tmp) for n in args.hosts.split(",")]
        print(f"idle host stream, JSON: {json_per_min / 1024:.1f} KiB/min")
        print("| hosts | fleet screen CPU s/min (with its ssh clients) | ssh masters CPU s/min | "
              "SSH bytes/min (wire) |")
        print("|--:|--:|--:|--:|")
        for r in rows:
            per = 60 / args.seconds
            print(f"| {r['hosts']} | {r['cpu_s'] * per:.2f} | {r['ssh_cpu_s'] * per:.2f} | "
                  f"{r['wire_bytes_per_min'] / 1024:.1f} KiB |")
        stack.remove()
    finally:
        server.close()
        engine.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

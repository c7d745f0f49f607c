"""Load-generating scenarios: ``log_flood`` and ``oom``.

The flood pre-renders a pool of realistic lines (ComfyUI messages, ANSI-coloured
ComfyUI-Manager lines, ``\\r``-updated tqdm bars, 10-40 KB lines) once, then every 10 ms
writes exactly the number of lines that are due as one ``os.write``. That keeps 20k+
lines/s on a single core.
"""

from __future__ import annotations

import random
import threading
import time
import uuid

from .comfyui import tqdm_bar
from .console import Console

TICK = 0.01
POOL_LINES = 4096
LONG_EVERY = 2000


def _normal_line(rnd: random.Random, seq: int) -> str:
    pick = rnd.randrange(20)
    if pick == 0:
        return "got prompt"
    if pick == 1:
        return f"Prompt executed in {rnd.uniform(0.4, 90):.2f} seconds"
    if pick == 2:
        model = rnd.choice(["SDXL", "Flux", "AutoencoderKL", "QwenImage"])
        return f"Requested to load {model}"
    if pick == 3:
        return f"loaded completely {rnd.uniform(9000, 22000):.1f} {rnd.uniform(80, 9000):.4f} True"
    if pick == 4:
        return f"loaded partially {rnd.uniform(6000, 9000):.1f} {rnd.uniform(6000, 9000):.1f} 0"
    if pick == 5:
        return f"{rnd.randint(1, 3)} models unloaded."
    if pick == 6:
        return "model weight dtype torch.float16, manual cast: None"
    if pick == 7:
        return "model_type EPS"
    if pick == 8:
        return "Using pytorch attention in VAE"
    if pick == 9:
        return "VAE load device: cuda:0, offload device: cpu, dtype: torch.bfloat16"
    if pick == 10:
        return (
            "CLIP/text encoder model load device: cuda:0, offload device: cpu, "
            "current: cpu, dtype: torch.float16"
        )
    if pick == 11:
        return (
            "\x1b[33m[ComfyUI-Manager]\x1b[0m default cache updated: "
            "https://raw.githubusercontent.com/ltdrdata/ComfyUI-Manager/main/model-list.json"
        )
    if pick == 12:
        left = rnd.randint(0, 9)
        return f"\x1b[32m[flood {seq}]\x1b[0m worker heartbeat ok, queue_remaining={left}"
    if pick == 13:
        return (
            "WARNING: request with non matching host and origin 127.0.0.1:8188 != "
            "evil.example, returning 403"
        )
    if pick == 14:
        return "Processing interrupted"
    if pick == 15:
        return (
            "!!! Exception during processing !!! Allocation on device\n"
            "Traceback (most recent call last):\n"
            '  File "/workspace/ComfyUI/execution.py", line 496, in execute\n'
            "    output_data, output_ui, has_subgraph, has_pending_tasks = await get_output_data(\n"
            "torch.OutOfMemoryError: Allocation on device\n"
            "Got an OOM, unloading all loaded models."
        )
    if pick == 16:
        return (
            "invalid prompt: {'type': 'prompt_no_outputs', 'message': 'Prompt has no outputs', "
            "'details': '', 'extra_info': {}}"
        )
    if pick == 17:
        return f"[flood] line {seq} id={uuid.UUID(int=rnd.getrandbits(128))}"
    if pick == 18:
        return "Failed to validate prompt for output 9:\nOutput will be ignored"
    return f"  0%|          | 0/20 [00:00<?, ?it/s] (seq {seq}) waiting for sampler"


def _progress_line(rnd: random.Random) -> str:
    total = rnd.choice([20, 25, 30])
    speed = rnd.uniform(2, 16)
    frames = [tqdm_bar(i, total, i / speed) for i in range(total + 1)]
    return "\r" + "\r".join(frames)


def _long_line(rnd: random.Random) -> str:
    size = rnd.randint(10_000, 40_000)
    unit = "{'inputs': {'text': 'a photo of an astronaut riding a horse', 'clip': ['4', 1]}, "
    body = (unit * (size // len(unit) + 1))[:size]
    return f"invalid prompt: {{'node_errors': {body}}}"


def build_flood_pool(lines: int = POOL_LINES, seed: int = 1234) -> list[bytes]:
    """Pre-encoded lines (each ends with one ``\\n``) cycled by the flood writer."""
    rnd = random.Random(seed)
    pool: list[bytes] = []
    for seq in range(lines):
        if seq % LONG_EVERY == LONG_EVERY - 1:
            text = _long_line(rnd)
        elif rnd.random() < 0.02:
            text = _progress_line(rnd)
        else:
            text = _normal_line(rnd, seq).replace("\n", " | ")
        pool.append((text + "\n").encode("utf-8"))
    return pool


def run_flood(
    console: Console,
    lines_per_second: float,
    duration: float | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Write ``lines_per_second`` lines for ``duration`` seconds (forever if ``None``).

    Catches up after stalls but never bursts more than one second's worth at once.
    Returns the number of lines written.
    """
    pool = build_flood_pool()
    doubled = pool + pool
    size = len(pool)
    index = 0
    written = 0
    start = time.monotonic()
    next_tick = start
    while stop is None or not stop.is_set():
        now = time.monotonic()
        elapsed = now - start
        if duration is not None and elapsed >= duration:
            break
        due = int(elapsed * lines_per_second) - written
        if due > lines_per_second:
            skipped = due - int(lines_per_second)
            written += skipped
            due -= skipped
        if due > 0:
            chunks = []
            remaining = due
            while remaining > 0:
                take = min(remaining, size)
                chunks.append(b"".join(doubled[index : index + take]))
                index = (index + take) % size
                remaining -= take
            console.write_bytes(b"".join(chunks))
            written += due
        next_tick += TICK
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_tick = time.monotonic()
    return written


def run_oom(console: Console, cap_mb: int, step_mb: int = 16, interval: float = 0.1) -> list:
    """Allocate and touch ``step_mb`` MiB every ``interval`` s up to ``cap_mb``.

    Inside a container with a memory limit the kernel OOM-kills the process
    (``OOMKilled=true``, exit 137); the cap keeps a bare host safe. Returns the blocks.
    """
    console.log("got prompt")
    console.log("Requested to load Flux")
    console.log("loaded partially 21456.4 21455.9 0")
    blocks: list[bytes] = []
    step = max(step_mb, 1) * 1024 * 1024
    total = 0
    cap = max(cap_mb, 0) * 1024 * 1024
    while total + step <= cap:
        blocks.append(b"\x01" * step)  # repetition writes every byte: pages are resident
        total += step
        time.sleep(interval)
    return blocks

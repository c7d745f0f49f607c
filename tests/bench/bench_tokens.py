"""Tokens status cost: what the tokens panel spends per poll on the reference set of token
locations (hash file, PASSWORD, .env with hash and raw keys, JSON).

Run: `python tests/bench/bench_tokens.py [--reads N]` from the repository root.

The first read pays one bcrypt check of the raw token at ComfyUI-Login's cost 12; later
reads hit the check cache, so an idle poll is a handful of small file reads.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from genai_tui.sources import tokens as tk  # noqa: E402
from tests.tokens_helpers import make_stack, new_pair  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reads", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raw, hash_ = new_pair(cost=12)
        st = make_stack(Path(tmp), raw, hash_)
        tk._CHECK_CACHE.clear()
        t0, c0 = time.perf_counter(), time.process_time()
        first = tk.read_report(st.tokens)
        cold, cold_cpu = time.perf_counter() - t0, time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(args.reads):
            tk.read_report(st.tokens)
        warm = (time.perf_counter() - t0) / args.reads
        warm_cpu = (time.process_time() - c0) / args.reads
    print(f"tokens status over {len(st.locations)} locations (consistent={first.consistent})")
    print(f"  first read : {cold * 1000:7.1f} ms wall, {cold_cpu * 1000:7.1f} ms CPU "
          "(one bcrypt check, cost 12)")
    print(f"  cached read: {warm * 1000:7.2f} ms wall, {warm_cpu * 1000:7.2f} ms CPU "
          f"(mean of {args.reads})")
    print(f"  panel at one read / 5 s: {warm_cpu / 5 * 100:.3f} % of one CPU")


if __name__ == "__main__":
    main()

"""I/O adapters, one per world (docker, probes, tokens, gpu, host, logs).

No module here imports Textual: sources produce snapshots and perform actions; the UI
and the CLI drive them.
"""

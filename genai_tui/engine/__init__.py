"""The headless engine: everything the faces (dashboard, `check`, `tokens`, exporter, SSH
stream) know and do, with no Textual or Rich.

- `collect`: `collect_once(config)`, one snapshot for `check` and `tokens status`;
- `live`: `Stack`, the long-running owner of every monitor, poll and log stream, which
  notifies subscribers with the part that changed;
- `derive`: the cross-source joins, written once (which hash a server uses, GPU process
  owners, restart loops);
- `actions`: restart and unify, returning outcome objects the faces only print.
"""

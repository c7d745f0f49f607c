"""The log divider after a stop says what Docker will do next, from the restart policy:
never "waiting for restart" for a container that stays stopped."""

import pytest

from genai_tui.sources.logs.docker_stream import Target


@pytest.mark.parametrize(("policy", "code", "said"), [
    ("", 137, "restart policy: no — stays stopped"),
    ("no", 0, "restart policy: no — stays stopped"),
    ("on-failure", 1, "restart policy: on-failure — Docker restarts it"),
    ("on-failure", 0, "restart policy: on-failure, exit 0 — stays stopped"),
    ("unless-stopped", 137,
     "restart policy: unless-stopped — Docker restarts it unless it was stopped by hand"),
    ("always", 0, "restart policy: always — Docker restarts it unless it was stopped by hand"),
])
def test_after_stop_follows_the_restart_policy(policy, code, said):
    t = Target("id", "c", running=False, exit_code=code, restart_policy=policy)
    assert t.after_stop() == said

"""Every ``llmsim`` command the README shows runs as written (slow suite: together they take a
few minutes), in a scratch folder beside links to the repository's scenarios and traces."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest

from tests.conftest import REPO, SHARED_TRACES


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            m = re.search(r"(?:^|&& )(llmsim .*?)(?: &&|$)", line)
            if m:
                cmds.append(m.group(1).strip())
    return cmds


COMMANDS = readme_commands()


def test_the_readme_shows_commands():
    assert len(COMMANDS) >= 15 and "llmsim run" in COMMANDS


@pytest.mark.slow
@pytest.mark.parametrize("cmd", COMMANDS)
def test_readme_command_runs(cmd, tmp_path):
    if not SHARED_TRACES.is_dir() and any(s in cmd for s in ("azure", "bucketserve", "sweeps")):
        pytest.skip("reads real traces from ../shared, which is absent")
    for name in ("scenarios", "traces", "benchmarks"):
        (tmp_path / name).symlink_to(REPO / name)
    proc = subprocess.run([sys.executable, "-m", "llmsim", *shlex.split(cmd, comments=True)[1:]], cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{cmd}\n{proc.stderr[-2000:]}"

"""The README, the man page and the completion scripts say what the code does."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fluppy_cli.errors import ExitStatus

ROOT = Path(__file__).parent.parent


def _options(command: str) -> set[str]:
    from typer.main import get_command

    from fluppy_cli.cli import app

    cmd = get_command(app).commands[command]  # type: ignore[attr-defined]
    names = set()
    for param in cmd.params:
        names.update(o for o in [*param.opts, *param.secondary_opts] if o.startswith("--"))
    return names - {"--help"}


@pytest.mark.parametrize("doc", ["README.md", "man/fluppy.1"])
@pytest.mark.parametrize("command", ["upload", "creds", "resume", "abort", "list"])
def test_every_option_is_documented(doc: str, command: str) -> None:
    text = (ROOT / doc).read_text().replace("\\-", "-")
    missing = [o for o in sorted(_options(command)) if o not in text]
    assert not missing, f"{doc} does not mention {missing}"


@pytest.mark.parametrize("doc", ["README.md", "man/fluppy.1"])
def test_every_exit_status_is_documented(doc: str) -> None:
    text = (ROOT / doc).read_text()
    for status in ExitStatus:
        assert re.search(rf"(^|\|\s|\n){int(status)}\b", text), f"{doc}: exit {int(status)}"


@pytest.mark.parametrize(
    ("shell", "path"), [("bash", "fluppy.bash"), ("zsh", "_fluppy"), ("fish", "fluppy.fish")]
)
def test_completion_scripts_are_current(shell: str, path: str) -> None:
    env = {**os.environ, "_FLUPPY_COMPLETE": f"source_{shell}"}
    out = subprocess.run(
        [sys.executable, "-c", "from fluppy_cli.cli import main; main()"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "fluppy" in out
    assert (ROOT / "completions" / path).read_text().strip() == out.strip(), "run make completions"

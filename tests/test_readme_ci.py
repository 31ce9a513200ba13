"""README's test command and CI (.ci/run) install and test the same way: a newcomer tests what CI passed with."""

from __future__ import annotations

import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _words(command: str) -> list[str]:
    """One command as words, less what does not change what is installed: ``python -m`` before pip (inside a
    virtual environment both are its pip) and pip's ``-q``."""
    words = shlex.split(command)
    if words[:3] == ["python", "-m", "pip"]:
        return [word for word in words[2:] if word != "-q"]
    return words


def _readme_test_command() -> list[list[str]]:
    """README's test command (the one line of it that installs and runs pytest), split at ``&&``."""
    lines = [line for line in (ROOT / "README.md").read_text().splitlines()
             if line.startswith("pip install") and "python -m pytest" in line]
    assert len(lines) == 1, f"README should have one test command, a line that installs and runs pytest: {lines}"
    return [_words(command) for command in lines[0].split("&&")]


def _ci_test_command() -> list[list[str]]:
    """What .ci/run installs and runs, up to its first pytest; upgrading pip in its fresh venv aside."""
    commands = []
    for line in (ROOT / ".ci" / "run").read_text().splitlines():
        if line.startswith(("python -m pip install", "python -m pytest")):
            commands.append(_words(line))
            if "pytest" in line:
                break
    return [command for command in commands if command != ["pip", "install", "--upgrade", "pip"]]


def test_readme_installs_and_runs_the_tests_as_ci_does() -> None:
    readme = _readme_test_command()
    assert any(".ci/constraints.txt" in command for command in readme), "README's install takes CI's constraints"
    assert readme == _ci_test_command()

"""`--help` reads like a well-kept CLI: each option with a value says what to type, flags none."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

COMMANDS = [[], ["serve"], ["check"], ["history"], ["demo"], ["backup"], ["backup", "run"],
            ["backup", "list"], ["backup", "verify"]]  # fmt: skip


def help_text(*command: str) -> str:
    env = {**os.environ, "COLUMNS": "160", "NO_COLOR": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", *command, "--help"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def option_line(text: str, option: str) -> str:
    (line,) = [line for line in text.splitlines() if re.match(rf"\W*{option}\s", line)]
    return line


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_no_type_placeholders(command: list[str]) -> None:
    text = help_text(*command)
    assert not re.search(r"<(bool|str|int|float|list\[[a-z]+\])>", text), text
    help_line = option_line(text, "--help")
    assert help_line.split("--help")[1].split()[:2] == ["Show", "this"]  # nothing in between


def test_metavars_say_what_to_type() -> None:
    serve = help_text("serve")
    expected = {
        "--listen-address": "HOST:PORT",
        "--poll-interval": "SECONDS",
        "--include-job": "REGEX",
        "--exclude-job": "REGEX",
        "--db-url": "URL",
        "--config": "FILE",
        "--statement-timeout": "SECONDS",
        "--max-jobs": "N",
        "--log-level": "LEVEL",
    }
    for option, metavar in expected.items():
        assert f" {metavar} " in option_line(serve, option), option
    history = help_text("history")
    assert " SPAN|DATE " in option_line(history, "--since")
    assert " STATUS " in option_line(history, "--status")
    for flag in ("--stats", "--json"):
        assert option_line(history, flag).split(flag)[1].split()[0][0].isupper()  # help text next
    assert " DIR " in option_line(help_text("backup", "list"), "--backup-dir")

"""Every command explains itself: ``--help`` works and says what the command does."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
import typer
from typer.testing import CliRunner

from raysegment.cli import app


def _commands(group: click.Group, prefix=()):
    for name, command in group.commands.items():
        yield prefix + (name,), command
        if isinstance(command, click.Group):
            yield from _commands(command, prefix + (name,))


ALL = list(_commands(typer.main.get_command(app)))


@pytest.mark.parametrize("path, command", ALL, ids=[" ".join(p) for p, _ in ALL])
def test_every_command_has_help(path, command):
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert command.help and command.help.strip().split("\n")[0] in " ".join(result.output.split())
    if not isinstance(command, click.Group):
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                assert param.help, f"{' '.join(path)} {param.opts[0]} has no help text"


def test_top_level_help_lists_the_foundation_commands():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("demo", "sample-data", "ingest", "inspect"):
        assert name in result.output


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "raysegment", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "raysegment" in result.stdout

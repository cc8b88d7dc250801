"""The ``musicaas`` command line as users type it: where the global options go, the help
texts, and the entry points."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from musicaas_cli import main as cli

#: One invocation of every sub-command, with its required arguments.
COMMANDS = {
    "up": ["up"],
    "status": ["status"],
    "demo": ["demo"],
    "analyze": ["analyze", "a.wav", "b.wav"],
    "generate": ["generate", "--key", "D minor", "--out", "out"],
    "similar": ["similar", "trk_x"],
    "search": ["search", "calm piano"],
    "recommend": ["recommend", "--like", "trk_x:2"],
    "discover": ["discover", "--context", "trk_a:trk_b"],
    "interactions": ["interactions", "add", "--listener", "l1", "--event", "play", "trk_x"],
}


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as info:
        cli.main([*argv, "--help"])
    assert info.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines; compare words


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_state_dir_goes_before_or_after_the_command(command, monkeypatch):
    monkeypatch.delenv("MUSICAAS_STATE_DIR", raising=False)
    argv = COMMANDS[command]
    parse = cli.build_parser().parse_args
    assert parse(argv).state_dir == ".musicaas"
    assert parse(["--state-dir", "/s/before", *argv]).state_dir == "/s/before"
    assert parse([*argv, "--state-dir", "/s/after"]).state_dir == "/s/after"
    assert parse([argv[0], "--state-dir", "/s/between", *argv[1:]]).state_dir == "/s/between"
    # given twice, the one nearer the end wins, as with any repeated option
    assert parse(["--state-dir", "/s/1", *argv, "--state-dir", "/s/2"]).state_dir == "/s/2"
    assert parse(argv).fn is getattr(cli, f"cmd_{command}")


def test_state_dir_default_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("MUSICAAS_STATE_DIR", "/var/lib/musicaas")
    assert cli.build_parser().parse_args(["up"]).state_dir == "/var/lib/musicaas"
    assert cli.build_parser().parse_args(["up", "--state-dir", "here"]).state_dir == "here"


def test_unknown_options_are_still_refused(capsys):
    with pytest.raises(SystemExit) as info:
        cli.build_parser().parse_args(["up", "--no-such-option"])
    assert info.value.code == 2
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_help_lists_the_state_dir(command, capsys):
    assert "--state-dir DIR state folder" in _help([command], capsys)


def test_top_level_help_lists_every_command(capsys):
    text = _help([], capsys)
    assert "--state-dir DIR" in text
    for command in COMMANDS:
        assert command in text


def test_generate_help_names_the_real_default_instruments(capsys):
    import pretty_midi

    from musicaas_generator.tokens import STYLE_DEFAULTS

    text = _help(["generate"], capsys)
    start = text.index("--instrument P General MIDI program")
    instrument = text[start:text.index("--seed SEED", start)]
    named = dict(re.findall(r"(\w+) (\d+) ", instrument))
    assert {style: int(program) for style, program in named.items() if style in STYLE_DEFAULTS} == {
        style: d["program"] for style, d in STYLE_DEFAULTS.items()
    }
    for d in STYLE_DEFAULTS.values():
        assert f"{d['program']} {pretty_midi.program_to_instrument_name(d['program'])}" in instrument
    assert "piano" not in instrument.lower()


@pytest.mark.parametrize(
    "entry", [[os.path.join(os.path.dirname(sys.executable), "musicaas")], [sys.executable, "-m", "musicaas_cli"]],
    ids=["script", "python -m"],
)
def test_entry_points_run_the_command(entry):
    proc = subprocess.run([*entry, "up", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: musicaas up") and "--state-dir DIR" in proc.stdout
    proc = subprocess.run([*entry, "up", "--state-dir"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--state-dir: expected one argument" in proc.stderr

"""Every help page documents each option and ends with examples that the parser accepts."""

from __future__ import annotations

import argparse
import shlex

from optprobe.cli import _parser


def _pages() -> dict[str, argparse.ArgumentParser]:
    parser = _parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {"optprobe": parser, **{f"optprobe {name}": page for name, page in sub.choices.items()}}


def _examples(text: str) -> list[str]:
    """The example command lines of a help page: those after its "example(s):" line, comments removed."""
    tail = text.split("\nexample", 1)[1].splitlines()[1:]
    return [line.split("  #")[0].strip() for line in tail if line.strip()]


def test_every_command_has_a_help_page():
    assert {"optprobe run", "optprobe sweep", "optprobe list", "optprobe report", "optprobe compare"} <= set(
        _pages()
    )


def test_every_option_and_subcommand_has_a_help_string():
    for name, page in _pages().items():
        for action in page._actions:
            assert action.help and action.help != argparse.SUPPRESS, f"{name}: {action.dest} has no help"
            for choice in getattr(action, "_choices_actions", []):  # the subcommands' one-line summaries
                assert choice.help, f"{name}: subcommand {choice.dest} has no help"


def test_every_help_page_ends_with_examples_the_parser_accepts():
    for name, page in _pages().items():
        text = page.format_help()
        assert "\nexample:\n" in text or "\nexamples:\n" in text, f"{name} --help has no example"
        examples = _examples(text)
        assert examples and text.rstrip().splitlines()[-1].strip().startswith("optprobe "), name
        for line in examples:
            argv = shlex.split(line)[1:]
            assert argv[0] == name.split()[-1] or name == "optprobe", f"{name}: example of another command"
            if "COMMAND" not in argv:
                _parser().parse_args(argv)  # exits (failing the test) on an unknown option or a missing one

"""Every option of every command (sub-commands of sub-commands included) has help text."""
from __future__ import annotations

import argparse

from avsync.cli.main import build_parser


def _parsers(parser: argparse.ArgumentParser, name: str = "avsync"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, p in action.choices.items():
                yield from _parsers(p, f"{name} {sub}")


def test_every_option_has_help():
    missing = []
    seen = 0
    for name, parser in _parsers(build_parser()):
        for action in parser._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            seen += 1
            if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
                missing.append(f"{name} {'/'.join(action.option_strings)}")
    assert seen > 100
    assert not missing, "options without help:\n" + "\n".join(missing)


def test_every_command_has_help():
    parser = build_parser()
    for name, p in _parsers(parser):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help for a in action._choices_actions}
                for sub in action.choices:
                    assert (helps.get(sub) or "").strip() or (action.choices[sub].description or "").strip(), \
                        f"{name} {sub}"

"""`evalkit --help` and every command's help read as plain text (no reStructuredText markup)."""

from __future__ import annotations

import pytest

from evalkit.cli import build_parser


def _help_texts() -> dict[str, str]:
    parser = build_parser()
    [subparsers] = [a for a in parser._actions if a.dest == "command"]  # argparse has no public accessor
    return {"evalkit": parser.format_help(), **{name: p.format_help() for name, p in subparsers.choices.items()}}


def test_help_is_plain_words():
    texts = _help_texts()
    assert {"run", "train", "report", "leaderboard", "runs"} <= set(texts)
    for name, text in texts.items():
        assert "``" not in text, f"{name} --help shows reStructuredText literals:\n{text}"
    assert "evalkit runs: list the results store" in " ".join(texts["runs"].split())


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"]])
def test_help_exits_zero(capsys, argv):
    from evalkit.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0 and "usage: evalkit" in capsys.readouterr().out

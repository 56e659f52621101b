"""The README's CLI reference is generated from `--help`, and this test keeps it current.

Regenerate it with `python tests/test_readme.py`.
"""

import re
from pathlib import Path

from click.testing import CliRunner

from s2s.cli import cli

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- cli-reference:start -->", "<!-- cli-reference:end -->"


def reference() -> str:
    runner = CliRunner()
    parts = []
    for args in [[]] + [[name] for name in sorted(cli.commands)]:
        text = runner.invoke(cli, args + ["--help"], prog_name="s2s", terminal_width=100).output
        parts.append(f"### `s2s {' '.join(args)}`\n\n```text\n{text.rstrip()}\n```\n".replace(
            "`s2s `", "`s2s`"))
    return "\n".join(parts)


def current() -> str:
    text = README.read_text(encoding="utf-8")
    return re.search(re.escape(START) + r"\n(.*)" + re.escape(END), text, re.S).group(1)


def test_cli_reference_matches_help():
    assert current().strip() == reference().strip(), "run `python tests/test_readme.py`"


if __name__ == "__main__":
    text = README.read_text(encoding="utf-8")
    head, rest = text.split(START)
    _, tail = rest.split(END)
    README.write_text(f"{head}{START}\n{reference()}\n{END}{tail}", encoding="utf-8")

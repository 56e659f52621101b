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


def test_the_readme_mechanism_example_is_a_working_mechanism():
    """The 'Adding a mechanism' example, run as written: registered, trained a step, decoded."""
    import torch

    from s2s.attention import ATTENTION, attention_config
    from s2s.models import build_model
    from s2s.models.rnn import RNNConfig
    from s2s.search import beam_search, greedy, max_lengths

    text = README.read_text(encoding="utf-8")
    code = re.search(r"\*\*Adding a mechanism\*\*.*?```python\n(.*?)```", text, re.S).group(1)
    try:
        exec(compile(code, "README.md", "exec"), {})
        torch.manual_seed(0)
        model = build_model(RNNConfig(emb_dim=16, hidden_dim=32, dropout=0.0,
                                      attention=attention_config("previous")), 30, 30)
        src = torch.randint(4, 30, (3, 6))
        mask = torch.ones_like(src, dtype=torch.bool)
        logits, weights = model(src, mask, torch.randint(4, 30, (3, 5)))
        logits.sum().backward()
        torch.testing.assert_close(weights.sum(-1), torch.ones(3, 1, 1, 5))
        model.eval()
        limit = max_lengths(mask, 1.0, 3)
        assert [h[0].tokens for h in greedy(model, src, mask, limit)] == \
            [h[0].tokens for h in beam_search(model, src, mask, limit, beam=1)]
    finally:
        ATTENTION._entries.pop("previous", None)

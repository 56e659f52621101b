"""The `s2s` command. Each command is a thin shell over a library function."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from s2s import __version__
from s2s.errors import UserError


class Group(click.Group):
    """Prints a user mistake as one line and exits with status 2, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(2)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="s2s")
def cli():
    """Sequence-to-sequence translation and captioning with attention you can see."""


decode_options = [
    click.option("--beam", type=click.IntRange(1), help="Beam size (1 = greedy)."),
    click.option("--length-penalty", type=float, help="Score = log-prob / length ** A."),
    click.option("--batch-size", type=click.IntRange(1), help="Sentences per batch."),
    click.option("--max-len", type=click.IntRange(0), default=0, help="Cap on output tokens."),
    click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda."),
    click.option("--checkpoint", default="best", show_default=True, help="best, last or step-N."),
]


def with_options(options):
    def apply(f):
        for option in reversed(options):
            f = option(f)
        return f
    return apply


@cli.command()
@click.argument("recipe")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe key, e.g. --set train.max_steps=100 (repeatable).")
@click.option("--run-dir", type=click.Path(path_type=Path), help="Default: runs/RECIPE_NAME.")
@click.option("--resume", is_flag=True, help="Continue the run from its last checkpoint.")
@click.option("--overwrite", is_flag=True, help="Delete an existing run directory first.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
def train(recipe, overrides, run_dir, resume, overwrite, device):
    """Train RECIPE (a name from `s2s recipes`, a .yaml file, or a run directory to resume)."""
    from s2s import distributed
    from s2s.train import resolve_recipe, train as run_training

    distributed.init_from_env()
    loaded, run_dir = resolve_recipe(recipe, overrides, run_dir, resume)
    run_training(loaded, run_dir, device=device, resume=resume, overwrite=overwrite)


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("text", nargs=-1)
@click.option("-i", "--input", "input_file", type=click.Path(path_type=Path), help="Read lines from FILE.")
@click.option("-o", "--output", "output_file", type=click.Path(path_type=Path), help="Write to FILE.")
@click.option("--n-best", type=click.IntRange(1), default=1, help="Print N hypotheses per line, TAB score.")
@click.option("--align", is_flag=True, help="Append ' ||| ' and word alignments (Pharaoh, src-tgt).")
@click.option("--align-layer", help="Layer for --align (default: the alignment layer).")
@click.option("--align-head", help="Head N or mean for --align (default: mean).")
@with_options(decode_options)
def translate(run_dir, text, input_file, output_file, n_best, align, align_layer, align_head, beam,
              length_penalty, batch_size, max_len, device, checkpoint):
    """Translate TEXT, or FILE / stdin line by line (one output line per input line)."""
    from s2s.alignment.forced import default_choice
    from s2s.cli_io import input_lines, output_stream, parse_choice, write_translations
    from s2s.run import Run
    from s2s.tasks import task_of
    from s2s.translate import DecodeOptions

    run = Run.open(run_dir, checkpoint, device)
    task = task_of(run.recipe)
    opts = DecodeOptions.from_run(run, beam=beam, n_best=n_best, length_penalty=length_penalty,
                                  batch_size=batch_size, max_len=max_len)
    links = None
    if align:
        layer, head = default_choice(run)
        links = (parse_choice(align_layer, layer), parse_choice(align_head, head))
    lines, interactive = input_lines(text, input_file)
    buffer = 1 if interactive else opts.batch_size * 8
    with output_stream(output_file) as out:
        write_translations(task.translate(run, lines, opts, buffer, links), out, n_best)


@cli.command()
@click.argument("run_dir", required=False, type=click.Path(path_type=Path))
@click.option("--split", default="test", show_default=True, help="train, validation or test.")
@click.option("--hyp", type=click.Path(path_type=Path), help="Score this file (no model needed) ...")
@click.option("--ref", type=click.Path(path_type=Path), help="... against this reference file.")
@click.option("--alignments", type=click.Path(path_type=Path),
              help="Gold word alignments for --data (i-j sure, i?j or i-j-P possible): AER.")
@click.option("--data", "pairs_file", type=click.Path(path_type=Path),
              help="Sentence pairs for --alignments, 'source<TAB>target' per line.")
@click.option("-o", "--output", "output_file", type=click.Path(path_type=Path), help="Save hypotheses.")
@click.option("--json", "as_json", is_flag=True, help="Print scores as JSON.")
@with_options(decode_options)
def evaluate(run_dir, split, hyp, ref, alignments, pairs_file, output_file, as_json, beam,
             length_penalty, batch_size, max_len, device, checkpoint):
    """BLEU and chrF (sacreBLEU, with signatures) of a run on a split, or of --hyp vs --ref;
    alignment error rate against gold alignments with --alignments and --data."""
    from s2s.cli_io import print_report

    if hyp or ref:
        from s2s.evaluate import score_files

        if not (hyp and ref):
            raise UserError("--hyp and --ref go together")
        return print_report({"data": f"{hyp} vs {ref}", **score_files(hyp, ref).as_dict()}, as_json)
    if run_dir is None:
        raise UserError("give a RUN_DIR, or --hyp FILE --ref FILE")
    from s2s.files import atomic_write_text
    from s2s.run import Run
    from s2s.tasks import task_of
    from s2s.tasks.translation import score_gold_alignments
    from s2s.translate import DecodeOptions

    run = Run.open(run_dir, checkpoint, device)
    if alignments or pairs_file:
        if not (alignments and pairs_file):
            raise UserError("--alignments and --data go together")
        report = score_gold_alignments(run, pairs_file, alignments)
        return print_report({"data": f"{pairs_file} with {alignments}", **report}, as_json)
    opts = DecodeOptions.from_run(run, beam=beam, length_penalty=length_penalty,
                                  batch_size=batch_size, max_len=max_len)
    if split not in ("train", "validation", "test"):
        raise UserError(f"--split must be train, validation or test, not {split!r}")
    report, hyps = task_of(run.recipe).evaluate(run, split, opts)
    if output_file:
        atomic_write_text(output_file, "".join(h + "\n" for h in hyps))
    where = f"{run_dir} ({run.checkpoint.name}) on {split}, beam {opts.beam}"
    print_report({"data": where, **report}, as_json)


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--last", type=click.IntRange(1), default=5, show_default=True,
              help="Average the newest N step checkpoints.")
@click.option("--name", help="Checkpoint name to write (default: average-lastN).")
def average(run_dir, last, name):
    """Average a run's last N checkpoints; use the result with --checkpoint NAME."""
    from s2s.checkpoint import average_checkpoints

    where = average_checkpoints(run_dir, last, name)
    click.echo(f"wrote {where}; use it with `--checkpoint {where.name}`")


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("text", nargs=-1, required=True)
@click.option("--target", help="Force this translation (teacher-forced) instead of the model's own.")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Write a heatmap (.png .svg .pdf) or the matrices of every kind (.json .npz).")
@click.option("--kind", type=click.Choice(["cross", "encoder-self", "decoder-self", "encoder-rollout"]),
              default="cross", show_default=True,
              help="Which attention: cross (target->source), a Transformer's encoder or decoder "
                   "self-attention, or the encoder's attention rollout over its layers.")
@click.option("--layer", help="Layer N, or all (default: the alignment layer; self: the last).")
@click.option("--head", help="Head N, mean or all (default: mean).")
@click.option("--words", is_flag=True, help="Merge subword pieces into words first.")
@click.option("--color/--no-color", default=None, help="Shade the grid with colours (default: if a terminal).")
@click.option("--patch", metavar="ROW,COL",
              help="Images, ViT or focal encoder: also draw this patch's self-attention in every "
                   "encoder layer, its rollout over the layers and (focal) the regions it used.")
@with_options(decode_options)
def inspect(run_dir, text, target, output, kind, layer, head, words, color, patch, beam,
            length_penalty, batch_size, max_len, device, checkpoint):
    """Show the attention matrix of TEXT's translation, or export it; for a captioning run, TEXT
    is image files and -o draws each word's attention over the image."""
    from s2s.cli_io import parse_choice, parse_patch
    from s2s.run import Run
    from s2s.tasks import InspectRequest, task_of
    from s2s.translate import DecodeOptions

    patch = parse_patch(patch)  # a malformed value fails before the run is loaded
    run = Run.open(run_dir, checkpoint, device)
    opts = DecodeOptions.from_run(run, beam=beam, length_penalty=length_penalty, max_len=max_len)
    request = InspectRequest(target=target, output=output, kind=kind,
                             layer=parse_choice(layer, None), head=parse_choice(head, None),
                             words=words, color=sys.stdout.isatty() if color is None else color,
                             patch=patch)
    for line in task_of(run.recipe).inspect(run, list(text), request, opts):
        click.echo(line)


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, required=True)
@click.option("--n-best", type=click.IntRange(1), default=1, help="Print N captions per image, TAB score.")
@with_options(decode_options)
def caption(run_dir, images, n_best, beam, length_penalty, batch_size, max_len, device, checkpoint):
    """Caption IMAGES with a captioning run: one line per image."""
    from s2s.cli_io import write_translations
    from s2s.run import Run
    from s2s.tasks import task_of
    from s2s.translate import DecodeOptions

    run = Run.open(run_dir, checkpoint, device)
    opts = DecodeOptions.from_run(run, beam=beam, n_best=n_best, length_penalty=length_penalty,
                                  batch_size=batch_size, max_len=max_len)
    write_translations(task_of(run.recipe).caption(run, list(images), opts), sys.stdout, n_best)


@cli.command()
def recipes():
    """List the recipes: name, task, model, attention, dataset."""
    from s2s.recipe_files import recipe_rows

    rows = [("recipe", "task", "model", "attention", "dataset")] + recipe_rows()
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def main():  # pragma: no cover - `python -m s2s`
    cli(prog_name="s2s")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

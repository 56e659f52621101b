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
    from s2s.recipe import load_recipe, recipe_from_dict, apply_overrides, recipe_to_dict
    from s2s.run import RECIPE_FILE, load_run_recipe
    from s2s.train import train as run_training

    distributed.init_from_env()
    if (Path(recipe) / RECIPE_FILE).is_file():  # a run directory
        run_dir = run_dir or Path(recipe)
        loaded = recipe_from_dict(apply_overrides(recipe_to_dict(load_run_recipe(recipe)), overrides))
    else:
        loaded = load_recipe(recipe, overrides)
        run_dir = run_dir or Path("runs") / loaded.name
        if resume and (run_dir / RECIPE_FILE).is_file():
            loaded = recipe_from_dict(apply_overrides(recipe_to_dict(load_run_recipe(run_dir)),
                                                      overrides))
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
    from s2s.cli_io import input_lines, output_stream, write_translations
    from s2s.run import Run
    from s2s.translate import DecodeOptions, translate_stream

    run = Run.open(run_dir, checkpoint, device)
    opts = DecodeOptions.from_run(run, beam=beam, n_best=n_best, length_penalty=length_penalty,
                                  batch_size=batch_size, max_len=max_len)
    links = None
    if align:
        from s2s.aligner import default_choice, parse_choice

        layer, head = default_choice(run)
        links = (parse_choice(align_layer, layer), parse_choice(align_head, head))
    lines, interactive = input_lines(text, input_file)
    buffer = 1 if interactive else opts.batch_size * 8
    with output_stream(output_file) as out:
        write_translations(translate_stream(run, lines, opts, buffer, links), out, n_best)


@cli.command()
@click.argument("run_dir", required=False, type=click.Path(path_type=Path))
@click.option("--split", default="test", show_default=True, help="train, validation or test.")
@click.option("--src", "src_file", type=click.Path(path_type=Path),
              help="Translate this file (a sentence per line) with RUN_DIR, score it against --ref.")
@click.option("--hyp", type=click.Path(path_type=Path), help="Score this file (no model needed) ...")
@click.option("--ref", type=click.Path(path_type=Path), help="... against this reference file.")
@click.option("--alignments", type=click.Path(path_type=Path),
              help="Gold word alignments for --data (i-j sure, i?j or i-j-P possible): AER.")
@click.option("--data", "pairs_file", type=click.Path(path_type=Path),
              help="Sentence pairs for --alignments, 'source<TAB>target' per line.")
@click.option("-o", "--output", "output_file", type=click.Path(path_type=Path), help="Save hypotheses.")
@click.option("--metrics", "metric_names", default="bleu,chrf", show_default=True,
              help="sacreBLEU metrics to report, comma-separated: bleu, chrf, ter.")
@click.option("--paired-bootstrap", "baseline_dir", metavar="OTHER_RUN",
              type=click.Path(path_type=Path),
              help="Translate the same sentences with OTHER_RUN (the baseline) and test the "
                   "difference: sacreBLEU's paired bootstrap resampling (p-value, 95% CI).")
@click.option("--json", "as_json", is_flag=True, help="Print scores as JSON.")
@with_options(decode_options)
def evaluate(run_dir, split, src_file, hyp, ref, alignments, pairs_file, output_file, metric_names,
             baseline_dir, as_json, beam, length_penalty, batch_size, max_len, device, checkpoint):
    """BLEU and chrF (and TER: sacreBLEU, with signatures) of a run on a split or on --src vs
    --ref, or of --hyp vs --ref; alignment error rate against gold alignments with --alignments
    and --data."""
    from s2s.cli_io import check_output_file, print_report
    from s2s.evaluate import parse_metrics

    metrics = parse_metrics(metric_names)
    if output_file:
        check_output_file(output_file)
    if hyp or (ref and not src_file):
        from s2s.evaluate import score_files

        if not (hyp and ref):
            raise UserError("--hyp and --ref go together (or --src and --ref, with a RUN_DIR)")
        if src_file or baseline_dir:
            raise UserError("--hyp scores a translation as it is; --src and --paired-bootstrap "
                            "translate with a RUN_DIR: use one or the other")
        return print_report({"data": f"{hyp} vs {ref}", **score_files(hyp, ref, metrics).as_dict()},
                            as_json)
    if src_file and not ref:
        raise UserError("--src and --ref go together")
    if run_dir is None:
        raise UserError("give a RUN_DIR, or --hyp FILE --ref FILE")
    from s2s.run import Run

    run = Run.open(run_dir, checkpoint, device)
    if alignments or pairs_file:
        from s2s.aligner import align, default_choice, gold_alignment_scores, read_pairs
        from s2s.alignment import read_alignments

        if not (alignments and pairs_file):
            raise UserError("--alignments and --data go together")
        sources, targets = read_pairs(pairs_file)
        report = gold_alignment_scores(align(run, sources, targets), read_alignments(alignments),
                                       default_choice(run))
        return print_report({"data": f"{pairs_file} with {alignments}", **report}, as_json)
    from s2s.aligner import model_alignment_report
    from s2s.checkpoint import atomic_write_text
    from s2s.evaluate import best_translations, evaluate_files, evaluate_run, paired_bootstrap
    from s2s.translate import DecodeOptions

    decoding = dict(beam=beam, length_penalty=length_penalty, batch_size=batch_size, max_len=max_len)
    opts = DecodeOptions.from_run(run, **decoding)
    if baseline_dir and run.recipe.task == "captioning":
        raise UserError("--paired-bootstrap compares two translation runs")
    baseline = Run.open(baseline_dir, "best", device) if baseline_dir else None
    where = f"{run_dir} ({run.checkpoint.name}) on {src_file or split}, beam {opts.beam}"
    if run.recipe.task == "captioning":
        from s2s.captioning import evaluate_captions

        if src_file:
            raise UserError(f"{run_dir} is a captioning run: --src takes text to translate")
        report, hyps = evaluate_captions(run, split, opts, metrics)
    else:
        if src_file:
            scores, hyps, pairs = evaluate_files(run, src_file, ref, opts, metrics)
        else:
            scores, hyps, pairs = evaluate_run(run, split, opts, metrics)
        report = {**scores.as_dict(), **model_alignment_report(run, pairs, hyps)}
        if baseline is not None:
            others = best_translations(baseline, pairs["src"],
                                       DecodeOptions.from_run(baseline, **decoding))
            report["paired_bootstrap"] = paired_bootstrap(
                (str(baseline_dir), others), (str(run_dir), hyps), pairs["tgt"], metrics)
    if output_file:
        atomic_write_text(output_file, "".join(h + "\n" for h in hyps))
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
              help="Write a heatmap (.png .svg .pdf) or the matrices (.json .npz).")
@click.option("--layer", help="Decoder layer N, or all (default: the alignment layer).")
@click.option("--head", help="Head N, mean or all (default: mean).")
@click.option("--words", is_flag=True, help="Merge subword pieces into words first.")
@click.option("--color/--no-color", default=None, help="Shade the grid with colours (default: if a terminal).")
@with_options(decode_options)
def inspect(run_dir, text, target, output, layer, head, words, color, beam, length_penalty,
            batch_size, max_len, device, checkpoint):
    """Show the alignment (attention) matrix of TEXT's translation, or export it; for a captioning
    run, TEXT is image files and -o draws each word's attention over the image."""
    from s2s.aligner import align, default_choice, inspect_sentence, parse_choice
    from s2s.run import Run
    from s2s.translate import DecodeOptions, translate

    run = Run.open(run_dir, checkpoint, device)
    default_layer, default_head = default_choice(run)
    layer, head = parse_choice(layer, default_layer), parse_choice(head, default_head)
    if run.recipe.task == "captioning":
        from s2s.captioning import overlays

        if output is None or output.suffix.lower() not in (".png", ".svg", ".pdf"):
            raise UserError("inspecting an image draws its attention: give -o FILE.png (or .svg, .pdf)")
        opts = DecodeOptions.from_run(run, beam=beam, length_penalty=length_penalty, max_len=max_len)
        for path in text:
            target = output if len(text) == 1 else output.with_name(f"{Path(path).stem}-{output.name}")
            caption = overlays(run, path, opts, target, layer, head)
            click.echo(f"{path}: {caption}\nwrote {target}")
        return
    source = " ".join(text).strip()
    if not source:
        raise UserError("nothing to inspect: the sentence is empty")
    if target is None:
        opts = DecodeOptions.from_run(run, beam=beam, length_penalty=length_penalty, max_len=max_len)
        target = translate(run, [source], opts)[0][0].text
    item = align(run, [source], [target])[0]
    click.echo(inspect_sentence(run, item, layer, head, words, output,
                                sys.stdout.isatty() if color is None else color))


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, required=True)
@click.option("--n-best", type=click.IntRange(1), default=1, help="Print N captions per image, TAB score.")
@with_options(decode_options)
def caption(run_dir, images, n_best, beam, length_penalty, batch_size, max_len, device, checkpoint):
    """Caption IMAGES with a captioning run: one line per image."""
    from s2s.captioning import caption_files
    from s2s.cli_io import write_translations
    from s2s.run import Run
    from s2s.translate import DecodeOptions

    run = Run.open(run_dir, checkpoint, device)
    if run.recipe.task != "captioning":
        raise UserError(f"{run_dir} is a {run.recipe.task} run; use `s2s translate`")
    opts = DecodeOptions.from_run(run, beam=beam, n_best=n_best, length_penalty=length_penalty,
                                  batch_size=batch_size, max_len=max_len)
    write_translations(caption_files(run, list(images), opts), sys.stdout, n_best)


@cli.command()
def recipes():
    """List the recipes: name, task, model, attention, dataset."""
    from s2s.recipe import list_recipes

    rows = [("recipe", "task", "model", "attention", "dataset")] + list_recipes()
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def main():  # pragma: no cover - `python -m s2s`
    cli(prog_name="s2s")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

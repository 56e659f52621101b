"""The `s2s` command. Each command is a thin shell over a library function."""

from __future__ import annotations

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
    click.option("--quantize", type=click.Choice(["none", "int8"]), default="none",
                 show_default=True,
                 help="int8: decode with dynamic int8 linear and RNN layers (CPU; the run is "
                      "unchanged)."),
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
@click.option("--engine", type=click.Choice(["s2s", "ctranslate2"]), default=None,
              help="Decode with s2s (default) or CTranslate2 (a run is converted on the fly; an "
                   "`s2s export --to ctranslate2` folder always uses it).")
@with_options(decode_options)
def translate(run_dir, text, input_file, output_file, n_best, align, align_layer, align_head, engine,
              beam, length_penalty, batch_size, max_len, device, checkpoint, quantize):
    """Translate TEXT, or FILE / stdin line by line (one output line per input line)."""
    from s2s.alignment.forced import default_choice
    from s2s.cli_io import input_chunks, output_stream, parse_choice, write_translations
    from s2s.tasks import task_of
    from s2s.translate import DecodeOptions

    run = open_for_translation(run_dir, checkpoint, device, engine, quantize)
    if align and run.model is None:
        raise UserError(f"{run_dir} is a CTranslate2 model: --align needs the s2s run's attention "
                        "(use `s2s translate RUN --engine ctranslate2 --align`)")
    task = task_of(run.recipe)
    opts = DecodeOptions.from_run(run, beam=beam, n_best=n_best, length_penalty=length_penalty,
                                  batch_size=batch_size, max_len=max_len)
    links = None
    if align:
        layer, head = default_choice(run)
        links = (parse_choice(align_layer, layer), parse_choice(align_head, head))
    chunks = input_chunks(text, input_file, opts.batch_size * 8)
    with output_stream(output_file) as out:
        write_translations(task.translate(run, chunks, opts, links), out, n_best)


def open_for_translation(path: Path, checkpoint: str, device: str, engine: str | None,
                         quantize: str = "none"):
    """An s2s run (decoded by s2s, or converted to CTranslate2 on the fly with --engine
    ctranslate2), or a folder made by `s2s export --to ctranslate2`."""
    from s2s.export import is_ctranslate2_export, need
    from s2s.run import Run

    exported = is_ctranslate2_export(path)
    if exported and engine == "s2s":
        raise UserError(f"{path} is a CTranslate2 model; it decodes with --engine ctranslate2 only")
    if not exported and engine != "ctranslate2":
        return Run.open(path, checkpoint, device, quantize=quantize)
    if quantize != "none":
        raise UserError("--quantize is for s2s's own decoding; CTranslate2 quantises at export "
                        "(`s2s export RUN --to ctranslate2 OUT --quantization int8`)")
    need("ctranslate2")
    from s2s.export import ctranslate2 as ct2

    return ct2.open_export(path) if exported else ct2.with_engine(Run.open(path, checkpoint, "cpu"))


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
             baseline_dir, as_json, beam, length_penalty, batch_size, max_len, device, checkpoint,
             quantize):
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
    from s2s.files import atomic_write_text
    from s2s.run import Run
    from s2s.tasks import task_of
    from s2s.tasks.translation import read_parallel_files, score_gold_alignments
    from s2s.translate import DecodeOptions

    run = Run.open(run_dir, checkpoint, device, quantize=quantize)
    if alignments or pairs_file:
        if not (alignments and pairs_file):
            raise UserError("--alignments and --data go together")
        report = score_gold_alignments(run, pairs_file, alignments)
        return print_report({"data": f"{pairs_file} with {alignments}", **report}, as_json)
    if split not in ("train", "validation", "test"):
        raise UserError(f"--split must be train, validation or test, not {split!r}")
    decoding = dict(beam=beam, length_penalty=length_penalty, batch_size=batch_size, max_len=max_len)
    opts = DecodeOptions.from_run(run, **decoding)
    pairs = read_parallel_files(src_file, ref) if src_file else None
    baseline = None
    if baseline_dir:
        other = Run.open(baseline_dir, "best", device, quantize=quantize)
        baseline = (str(baseline_dir), other, DecodeOptions.from_run(other, **decoding))
    report, hyps = task_of(run.recipe).evaluate(run, split, opts, metrics, pairs, baseline)
    if output_file:
        atomic_write_text(output_file, "".join(h + "\n" for h in hyps))
    where = f"{run_dir} ({run.checkpoint.name}) on {src_file or split}, beam {opts.beam}"
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
            length_penalty, batch_size, max_len, device, checkpoint, quantize):
    """Show the attention matrix of TEXT's translation, or export it; for a captioning run, TEXT
    is image files and -o draws each word's attention over the image."""
    from s2s.cli_io import parse_choice, parse_patch
    from s2s.run import Run
    from s2s.tasks import InspectRequest, task_of
    from s2s.translate import DecodeOptions

    patch = parse_patch(patch)  # a malformed value fails before the run is loaded
    run = Run.open(run_dir, checkpoint, device, quantize=quantize)
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
def caption(run_dir, images, n_best, beam, length_penalty, batch_size, max_len, device, checkpoint,
            quantize):
    """Caption IMAGES with a captioning run: one line per image."""
    from s2s.cli_io import write_translations
    from s2s.run import Run
    from s2s.tasks import task_of
    from s2s.translate import DecodeOptions

    run = Run.open(run_dir, checkpoint, device, quantize=quantize)
    opts = DecodeOptions.from_run(run, beam=beam, n_best=n_best, length_penalty=length_penalty,
                                  batch_size=batch_size, max_len=max_len)
    write_translations(task_of(run.recipe).caption(run, list(images), opts), sys.stdout, n_best)


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default="curves.png",
              show_default=True, help="A .png, .svg or .pdf file.")
def plot(run_dirs, output):
    """Training curves of RUN_DIRS, overlaid: training loss, learning rate, validation loss and
    score, against steps and against minutes (from each run's metrics.jsonl)."""
    from s2s.curves import plot_runs

    plot_runs(list(run_dirs), output)
    click.echo(f"wrote {output}")


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; any but loopback needs --api-key.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Server processes, each with its own copy of the models.")
@click.option("--api-key", help="Require this key (Authorization: Bearer KEY or X-API-Key: KEY); "
              "default: $S2S_API_KEY.")
@click.option("--max-batch", type=click.IntRange(1),
              help="Most sentences (or images) decoded at once (default: the run's batch size).")
@click.option("--window-ms", type=click.FloatRange(0), default=5.0, show_default=True,
              help="How long a batch waits for another request to join it.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--checkpoint", default="best", show_default=True, help="best, last or step-N.")
@click.option("--quantize", type=click.Choice(["none", "int8"]), default="none", show_default=True,
              help="int8: serve dynamic int8 copies of the models (CPU).")
def serve(run_dirs, host, port, workers, api_key, max_batch, window_ms, device, checkpoint, quantize):
    """Serve RUN_DIRS over HTTP: translation, attention and captions (JSON API under /v1), and the
    attention explorer at /. Needs the `serve` extra: pip install "s2s[serve]"."""
    try:
        from s2s.serve.app import serve as run_service
    except ImportError as e:
        if e.name not in ("fastapi", "starlette", "uvicorn", "pydantic", "multipart",
                          "python_multipart"):
            raise
        raise UserError(f'`s2s serve` needs {e.name}: pip install "s2s[serve]"') from None
    run_service(list(run_dirs), host, port, workers, api_key, device, checkpoint, max_batch,
                window_ms, quantize, say=lambda line: click.echo(line, err=True))


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--to", "target", type=click.Choice(["ctranslate2", "huggingface"]), required=True,
              help="CTranslate2 model folder, or Hugging Face Marian model folder.")
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--quantization", type=click.Choice(["float32", "int8", "int8_float32"]),
              default="float32", show_default=True, help="CTranslate2 weight type.")
@click.option("--checkpoint", default="best", show_default=True, help="best, last or step-N.")
@click.option("--overwrite", is_flag=True, help="Replace OUT_DIR if it exists.")
def export(run_dir, target, out_dir, quantization, checkpoint, overwrite):
    """Export a Transformer run to CTranslate2 or Hugging Face (Marian) in OUT_DIR."""
    from s2s.export import check_free, need
    from s2s.run import Run

    need("ctranslate2" if target == "ctranslate2" else "transformers")
    check_free(out_dir, overwrite)
    run = Run.open(run_dir, checkpoint, "cpu")
    if target == "ctranslate2":
        from s2s.export.ctranslate2 import export_ctranslate2

        export_ctranslate2(run, out_dir, quantization)
        click.echo(f"wrote {out_dir} (CTranslate2, {quantization}); translate with "
                   f"`s2s translate {out_dir}`")
    else:
        from s2s.export.huggingface import export_huggingface

        export_huggingface(run, out_dir)
        click.echo(f"wrote {out_dir} (Hugging Face MarianMTModel); load it with "
                   "MarianMTModel.from_pretrained and MarianTokenizer.from_pretrained")


@cli.command("import")
@click.argument("source_format", metavar="FORMAT", type=click.Choice(["huggingface"]))
@click.argument("hf_dir", type=click.Path(path_type=Path))
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Set a recipe key of the new run, e.g. --set data.path=corpus/ (repeatable).")
@click.option("--overwrite", is_flag=True, help="Replace RUN_DIR if it exists.")
def import_(source_format, hf_dir, run_dir, overrides, overwrite):
    """Make a run directory from a local Hugging Face Marian model (opus-mt layout)."""
    from s2s.export import check_free, need
    from s2s.export.marian_import import import_marian

    need("transformers")
    check_free(run_dir, overwrite)
    import_marian(hf_dir, run_dir, overrides)
    click.echo(f"wrote {run_dir}; try `s2s translate {run_dir} 'some text'`")


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

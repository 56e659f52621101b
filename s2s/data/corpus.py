"""Load one split of a corpus with HuggingFace `datasets`, whatever its source.

A recipe's `data` section names a hub id (`bentrevett/multi30k`), a local folder or file (JSONL,
CSV, TSV, Parquet, plain parallel text `train.de` + `train.en`, a `save_to_disk` folder, an
`imagefolder`), or a built-in generator (`dates`, `shapes`). Every source ends up as a `datasets.Dataset` with the recipe's source and target
columns (dotted names reach into nested columns such as `translation.de`).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from s2s.data import dates, shapes
from s2s.errors import UserError
from s2s.recipe import DataConfig
from s2s.registry import did_you_mean

if TYPE_CHECKING:
    import datasets


def hf_datasets():
    """The `datasets` library, imported on first use: it takes about a second, and translating,
    inspecting and serving never need it."""
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    return datasets

FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".tsv": "csv",
                 ".parquet": "parquet", ".txt": "text"}


def generators() -> dict[str, Callable[[str, int, int], Iterator[dict]]]:
    """Built-in corpora, made on the fly, deterministic by seed, yielding one example at a time."""
    return {"dates": dates.iterate, "shapes": shapes.iterate}


def _generated_rows(name: str, split: str, size: int, seed: int) -> Iterator[dict]:
    yield from generators()[name](split, size, seed)


def generate_split(name: str, split: str, size: int, seed: int) -> datasets.Dataset:
    """A generated split, streamed into a cached Arrow file (memory stays flat at any size)."""
    if size == 0:
        raise UserError(f"data.sizes.{split} is 0: the {name!r} generator would make an empty split")
    return hf_datasets().Dataset.from_generator(
        _generated_rows, gen_kwargs={"name": name, "split": split, "size": size, "seed": seed},
        keep_in_memory=False)


def describe(cfg: DataConfig) -> str:
    return cfg.path or cfg.dataset or "(no data.dataset or data.path)"


def load_split(cfg: DataConfig, split: str) -> datasets.Dataset:
    """Split `split` ("train" | "validation" | "test") as named in the recipe."""
    name = getattr(cfg.splits, split)
    if cfg.path:
        ds = load_local(Path(cfg.path), name, (cfg.src, cfg.tgt))
    elif cfg.dataset in generators():
        ds = generate_split(cfg.dataset, split, getattr(cfg.sizes, split), cfg.seed)
    elif cfg.dataset:
        ds = load_hub(cfg.dataset, cfg.config, name)
    else:
        raise UserError("the recipe names no data: set data.dataset (hub id or generator) "
                        "or data.path (local folder)")
    if len(ds) == 0:
        raise UserError(f"split {name!r} of {describe(cfg)} is empty")
    return ds


def load_hub(hub_id: str, config: str | None, split: str) -> datasets.Dataset:
    try:
        return hf_datasets().load_dataset(hub_id, config, split=split)
    except ValueError as e:
        if "split" in str(e).lower():
            raise UserError(f"dataset {hub_id!r} has no split {split!r} ({e})") from None
        raise UserError(f"cannot load dataset {hub_id!r}: {str(e).splitlines()[0]}") from None
    except Exception as e:  # offline, unknown id, gated ...: all mean "not reachable as given"
        raise UserError(f"cannot load {hub_id!r} from the HuggingFace hub "
                        f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                        "check the id or point data.path at a local copy") from None


def load_local(path: Path, split: str,
               columns: tuple[str, str] = ("source", "target")) -> datasets.Dataset:
    """A `save_to_disk` folder, a folder of per-split files, parallel text files or image folders,
    or one file. `columns` (source, target) name the two columns of a TSV file without a header
    and are the suffixes of parallel text files (`train.de`, `train.en`)."""
    if not path.exists():
        raise UserError(f"data path not found: {path}")
    if path.is_file():
        if path.suffix not in FILE_BUILDERS:
            raise UserError(f"unsupported data file {path}; use one of {', '.join(FILE_BUILDERS)}")
        return load_files([path], split, columns)
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        saved = hf_datasets().load_from_disk(str(path))
        if isinstance(saved, hf_datasets().Dataset):
            return saved
        if split not in saved:
            raise UserError(f"no split {split!r} in {path} (it has: {', '.join(saved)})")
        return saved[split]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.stem.split("-")[0] == split
                   and p.suffix in FILE_BUILDERS)
    if files:
        return load_files(files, split, columns)
    parallel = [path / f"{split}.{suffix}" for suffix in columns]
    if any(f.is_file() for f in parallel):
        return load_parallel_text(parallel, columns)
    if (path / split).is_dir():
        return hf_datasets().load_dataset("imagefolder", data_dir=str(path), split=split)
    present = sorted({p.stem.split("-")[0] for p in path.iterdir() if p.suffix in FILE_BUILDERS}
                     | {p.name for p in path.iterdir() if p.is_dir()})
    raise UserError(f"no split {split!r} in {path} (found: {', '.join(present) or 'nothing'}); "
                    f"expected {split}.jsonl, {split}.csv, {split}.tsv, {split}.parquet, "
                    f"{split}.{columns[0]} + {split}.{columns[1]} or a {split}/ folder")


def load_files(files: list[Path], split: str,
               columns: tuple[str, str] = ("source", "target")) -> datasets.Dataset:
    """Data files of one format as one split; empty or unparsable files are user errors."""
    if all(f.stat().st_size == 0 for f in files):
        raise UserError(f"split {split!r} is empty ({', '.join(map(str, files))})")
    options = tsv_options(files[0], columns) if files[0].suffix == ".tsv" else {}
    try:
        return hf_datasets().load_dataset(FILE_BUILDERS[files[0].suffix],
                                     data_files={split: [str(f) for f in files]}, split=split,
                                     **options)
    except Exception as e:  # pyarrow/json/csv parse errors have many types
        raise UserError(f"cannot read {', '.join(map(str, files))}: "
                        f"{type(e).__name__} {str(e).splitlines()[0] if str(e) else ''}") from None


def tsv_options(first: Path, columns: tuple[str, str]) -> dict:
    """How to read TSV: tab-separated, no quoting, every field text (never NaN or a number).

    The first line is a header if it names the recipe's source and target columns; otherwise
    every line is `source<TAB>target`.
    """
    with open(first, encoding="utf-8", errors="replace") as f:
        fields = f.readline().rstrip("\r\n").split("\t")
    header = set(columns) <= set(fields)
    if not header and len(fields) != 2:
        raise UserError(f"{first}, line 1 has {len(fields)} tab-separated fields and no header "
                        f"naming {columns[0]!r} and {columns[1]!r}; without a header each line "
                        "must be source<TAB>target")
    names = fields if header else list(columns)
    return {"sep": "\t", "quoting": csv.QUOTE_NONE, "na_filter": False,
            "header": 0 if header else None, "column_names": names,
            "features": hf_datasets().Features({n: hf_datasets().Value("string") for n in names})}


def load_parallel_text(files: list[Path], columns: tuple[str, str]) -> datasets.Dataset:
    """Two plain text files, one sentence per line, the same number of lines: one split."""
    src, tgt = files
    for f, other in ((src, tgt), (tgt, src)):
        if not f.is_file():
            raise UserError(f"found {other} but not {f}: parallel text needs both files")
    sides = []
    for f, column in zip(files, columns):
        try:
            side = hf_datasets().load_dataset("text", data_files={"train": [str(f)]}, split="train")
        except Exception as e:  # decoding errors and the like
            raise UserError(f"cannot read {f}: {type(e).__name__} "
                            f"{str(e).splitlines()[0] if str(e) else ''}") from None
        sides.append(side.rename_column("text", column))
    if len(sides[0]) != len(sides[1]):
        raise UserError(f"{src} has {len(sides[0]):,} lines but {tgt} has {len(sides[1]):,}; "
                        "parallel text files need one sentence per line on both sides")
    return hf_datasets().concatenate_datasets(sides, axis=1)


def text_pairs(ds: datasets.Dataset, cfg: DataConfig) -> datasets.Dataset:
    """The split reduced to text columns `src` and `tgt` (plus generator extras such as spans),
    without the rows that lack either.

    Dotted names reach into nested columns (`translation.de`). Nothing is copied into Python
    lists: the result is a view of the same (memory-mapped) Arrow table.
    """
    if "." in cfg.src or "." in cfg.tgt:
        ds = ds.flatten()
    for name in (cfg.src, cfg.tgt):
        if name not in ds.column_names:
            raise UserError(f"column {name!r} not found in {describe(cfg)}"
                            f"{did_you_mean(name, ds.column_names)}; "
                            f"columns: {', '.join(ds.column_names)}")
        feature = ds.features[name]
        if getattr(feature, "dtype", None) not in ("string", "large_string"):
            raise UserError(f"column {name!r} of {describe(cfg)} must hold text, not {feature}")
    extras = [c for c in ds.column_names if c.endswith("_span")]
    ds = ds.select_columns([cfg.src, cfg.tgt, *extras])
    if any(ds.data.column(name).null_count for name in (cfg.src, cfg.tgt)):
        # a JSON null, a missing key, an empty CSV field: no pair to learn from or score
        ds = ds.filter(lambda src, tgt: [s is not None and t is not None for s, t in zip(src, tgt)],
                       input_columns=[cfg.src, cfg.tgt], batched=True)
    return ds.rename_columns({old: new for old, new in ((cfg.src, "src"), (cfg.tgt, "tgt"))
                              if old != new})

"""Finding and reading recipe files, without importing torch (so `s2s recipes` is instant).

`s2s train NAME` finds `recipes/NAME.yaml` in the working directory or among the recipes shipped
with s2s (also inside an installed wheel), or takes a path to a .yaml file.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import yaml

from s2s.errors import UserError
from s2s.registry import did_you_mean


def packaged_recipes() -> dict[str, Path]:
    """Recipes shipped with s2s (the repository's `recipes/`, also inside an installed wheel)."""
    root = importlib.resources.files("s2s.recipes")
    return {Path(p.name).stem: Path(str(p)) for p in root.iterdir() if p.name.endswith(".yaml")}


def find_recipe(name: str) -> Path:
    """A path to a YAML file, `./recipes/NAME.yaml`, or a packaged recipe NAME."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise UserError(f"recipe file not found: {name}")
        return path
    local = Path("recipes") / f"{name}.yaml"
    if local.is_file():
        return local
    shipped = packaged_recipes()
    if name not in shipped:
        raise UserError(f"unknown recipe {name!r}{did_you_mean(name, shipped)}; "
                        "`s2s recipes` lists them, or pass a path to a .yaml file")
    return shipped[name]


def read_yaml(path: Path) -> dict:
    """A recipe file as a mapping; syntax errors name the file, line and column."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read recipe {path}: {str(e).splitlines()[0]}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        context, start = getattr(e, "context", None), getattr(e, "context_mark", None)
        if context and start is not None and mark is not None:
            problem += f" ({context} from line {start.line + 1})"
        raise UserError(f"recipe {path}{where}: {problem}") from None
    if not isinstance(raw, dict):
        raise UserError(f"recipe {path} must be a YAML mapping of sections")
    return raw


def recipe_rows() -> list[tuple[str, str, str, str, str]]:
    """(name, task, model, attention, dataset) for every packaged recipe, read as plain YAML."""
    rows = []
    for name, path in sorted(packaged_recipes().items()):
        raw = read_yaml(path)
        model, data = raw.get("model") or {}, raw.get("data") or {}
        rows.append((name, raw.get("task", "translation"), str(model.get("arch", "?")),
                     attention_summary(model), str(data.get("dataset") or data.get("path") or "")))
    return rows


def attention_summary(model: dict) -> str:
    """'additive', 'multihead', 'additive + cbam + stn' ... for the recipe table."""
    decoder = model.get("decoder") or model
    default = "multihead" if model.get("arch") == "transformer" or decoder.get("type") == "transformer" \
        else "additive"
    section = decoder.get("attention") or decoder.get("cross_attention") or {}
    text = section.get("type", default)
    encoder = model.get("encoder") or {}
    if encoder.get("type") in ("vit", "focal"):
        text += f" + {encoder['type']} self-attention"
    if encoder.get("attention", "none") != "none":
        text += f" + {encoder['attention']}"
    if encoder.get("spatial_transformer"):
        text += " + stn"
    return text

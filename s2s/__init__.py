"""s2s: sequence-to-sequence translation and captioning with attention you can see.

`s2s.load(run_dir)` opens a trained run for use from Python (see `s2s.api`). It is imported on
first use, so `import s2s` (and `s2s --help`) stays quick and does not import PyTorch.
"""

import importlib

__version__ = "0.1.0"
__all__ = ["load", "Model", "InputError"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module("s2s.api"), name)
    raise AttributeError(f"module 's2s' has no attribute {name!r}")

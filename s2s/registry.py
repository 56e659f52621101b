"""A tiny name -> class registry, so recipes can say `attention: {type: additive}`.

An entry is a class that carries its recipe settings as a nested frozen dataclass `Config` (whose
`type` or `arch` field is the name), so adding a mechanism or an architecture is one class and one
`@REGISTRY.register(name)` line; the recipe parser finds the settings through the registry.
"""

from __future__ import annotations

import difflib
from typing import Callable, Generic, TypeVar

from s2s.errors import UserError

T = TypeVar("T")


def did_you_mean(name: str, choices) -> str:
    """' (did you mean "x"?)' for the closest choice, or ''."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f' (did you mean "{close[0]}"?)' if close else ""


class Registry(Generic[T]):
    """Maps recipe names to classes; unknown names are user errors that list the choices."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, *names: str) -> Callable[[T], T]:
        """Register the decorated class under one or more names."""
        def add(entry: T) -> T:
            for name in names:
                assert name not in self._entries, f"{self.kind} {name!r} registered twice"
                self._entries[name] = entry
            return entry

        return add

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise UserError(
                f"unknown {self.kind} {name!r}{did_you_mean(name, self._entries)}; "
                f"choose one of: {', '.join(self.names())}"
            )
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

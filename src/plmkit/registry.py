"""Small name -> (factory, config dataclass) registries, filled by explicit imports so grep finds every entry.

    objectives = Registry("objective")

    @objectives.register("mlm", config=MLMConfig)
    class MaskedLM: ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from plmkit.errors import ConfigError


@dataclass(frozen=True)
class Entry:
    name: str
    factory: Callable[..., Any]
    config: type
    doc: str


class Registry:
    """Maps a YAML `name:` to the class that implements it and the dataclass that types its section."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, *, config: type) -> Callable[[Any], Any]:
        def decorator(factory: Any) -> Any:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            doc = (factory.__doc__ or "").strip().splitlines()
            self._entries[name] = Entry(name, factory, config, doc[0] if doc else "")
            return factory

        return decorator

    def get(self, name: str) -> Entry:
        if name not in self._entries:
            known = ", ".join(sorted(self._entries)) or "none"
            raise ConfigError(f"unknown {self.kind} {name!r}; choose one of: {known}")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __iter__(self):
        return iter(self._entries[name] for name in self.names())

    def __contains__(self, name: str) -> bool:
        return name in self._entries

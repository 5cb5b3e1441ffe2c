"""One idiom for every set of named things: architectures, families, datasets, splits, protocols,
evaluators and built-in methods.

A ``Registry`` is a dict of records (frozen dataclasses) in registration order, that knows what it
holds: ``lookup`` of an unknown name raises one line listing the known ones, so no other module
writes that message, or compares names, itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

from .errors import ModelsetError

T = TypeVar("T")


class Registry(dict[str, T]):
    """name -> record. Built from records that carry their ``name``, or from a {name: record} map."""

    def __init__(self, kind: str, records: Iterable[T] | Mapping[str, T] = ()):
        super().__init__()
        self.kind = kind  # what a record is, for messages: "architecture", "dataset", ...
        pairs = records.items() if isinstance(records, Mapping) else ((r.name, r) for r in records)  # type: ignore[attr-defined]
        for name, record in pairs:
            self.add(record, name)

    def add(self, record: T, name: str | None = None) -> T:
        """Register ``record`` under ``name`` (else its own ``name``); a name is registered once."""
        name = record.name if name is None else name  # type: ignore[attr-defined]
        if name in self:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self[name] = record
        return record

    def names(self) -> list[str]:
        return list(self)

    def unknown(self, name: str) -> str:
        """The one line for a name that is not registered."""
        return f"unknown {self.kind} {name!r}; available: {', '.join(self)}"

    def lookup(self, name: str) -> T:
        if name not in self:
            raise ModelsetError(self.unknown(name))
        return self[name]

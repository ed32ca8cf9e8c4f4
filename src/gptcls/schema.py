"""How a train option is declared (`option(...)` on a dataclass field) and read back as an
`Option`; the option values' own parsers. gptcls.options holds the declarations."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from gptcls.errors import GptclsError


@dataclass(frozen=True)
class Shortcut:
    """A flag that sets an option to a fixed value (`--no-padding` = batch size 1)."""

    flag: str
    value: Any
    help: str
    conflict: str  # the error when the option is also given otherwise; {given} = that value


def option(default: Any, help: str, group: str, *, flags: tuple[str, ...] | None = None,
           choices: tuple[str, ...] | None = None, recipe: bool = False,
           minimum: float | None = None, below: float | None = None,
           metavar: str | None = None, label: str | None = None,
           in_config: bool = False, shortcut: Shortcut | None = None, via: str | None = None
           ) -> Any:
    """A dataclass field that is a train option. flags: default `--name-with-dashes`, or
    `--no-name` for a boolean that defaults to True; () with `via`: set through another flag.
    minimum (inclusive) and below (exclusive) bound a number."""
    meta = {"help": help, "group": group, "flags": flags, "choices": choices, "recipe": recipe,
            "minimum": minimum, "below": below, "metavar": metavar, "label": label,
            "in_config": in_config,
            "shortcut": shortcut, "via": via}
    return field(default=default, metadata={"option": meta})


@dataclass(frozen=True)
class Option:
    """One declared option, as derived from its field."""

    name: str
    section: str  # "run", "data" or "train": where it lives in RunOptions
    type: type  # bool, int, float, str or tuple (split fractions)
    default: Any
    help: str
    group: str
    flags: tuple[str, ...]
    choices: tuple[str, ...] | None
    recipe: bool
    minimum: float | None
    below: float | None
    metavar: str | None
    label: str
    in_config: bool
    shortcut: Shortcut | None
    via: str | None

    @property
    def flag(self) -> str:
        """How messages name it: its main flag, or the flag that sets it."""
        return self.flags[0] if self.flags else str(self.via)

    @property
    def negative(self) -> bool:
        return self.type is bool and self.flag.startswith("--no-")


def base_type(hint: Any) -> type:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return base_type(args[0])
    return typing.get_origin(hint) or hint


def declared(section: str, cls: type) -> list[Option]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get("option")
        if meta is None:
            continue
        kind = base_type(hints[f.name])
        flags = meta["flags"]
        if flags is None:
            flags = (("--no-" if kind is bool and f.default is True else "--")
                     + f.name.replace("_", "-"),)
        out.append(Option(f.name, section, kind, f.default, meta["help"], meta["group"], flags,
                          meta["choices"], meta["recipe"], meta["minimum"], meta["below"],
                          meta["metavar"],
                          meta["label"] or f.name, meta["in_config"], meta["shortcut"],
                          meta["via"]))
    return out


def check_fractions(fractions: tuple[float, ...] | list[float]) -> None:
    if len(fractions) != 3:
        raise GptclsError(f"need 3 split fractions (train, validation, test), got {fractions}")
    if any(not f > 0 for f in fractions):
        raise GptclsError(f"split fractions must all be positive, got {list(fractions)}")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise GptclsError(f"split fractions must sum to 1, got {list(fractions)}")


def parse_fractions(spec: str) -> tuple[float, float, float]:
    """Parse "0.7,0.1,0.2" into (train, validation, test) fractions: 3 positive, summing to 1."""
    values = []
    for part in (p.strip() for p in spec.split(",")):
        try:
            values.append(float(part))
        except ValueError:
            raise GptclsError(f"bad split fractions {spec!r}: {part!r} is not a number "
                              "(use e.g. 0.7,0.1,0.2)") from None
    check_fractions(values)
    return values[0], values[1], values[2]


def shown(v: Any) -> str:
    """An option value as a user would type it."""
    if isinstance(v, tuple):
        return ",".join(f"{x:g}" for x in v)
    return f"{v:g}" if isinstance(v, float) else str(v)

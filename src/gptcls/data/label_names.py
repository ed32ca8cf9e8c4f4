"""Names for labels written as codes (`--label-names 1=World,2=Sports`): the run trains on the
names, so its reports, predictions, server and exports say "Sports", not "2"; evaluate renames
a labelled file's codes the same way (config.json records the spec)."""

from __future__ import annotations

from collections.abc import Sequence

from gptcls.data.examples import Example
from gptcls.errors import GptclsError


def parse_label_names(spec: str, normalize: bool = True) -> dict[str, str]:
    """"1=World,2=Sports" -> {"1": "World", "2": "Sports"}. Codes are matched as the labels are
    read (stripped and case-folded unless --no-normalize-labels); names are kept as written."""
    names: dict[str, str] = {}
    for item in spec.split(","):
        code, sep, name = item.partition("=")
        code, name = code.strip(), name.strip()
        if not sep or not code or not name:
            raise GptclsError(f"--label-names {spec!r}: give CODE=NAME pairs separated by commas, "
                              "e.g. 1=World,2=Sports")
        key = code.casefold() if normalize else code
        if key in names:
            raise GptclsError(f"--label-names names {code!r} twice")
        names[key] = name
    if len(set(names.values())) < len(names):
        raise GptclsError(f"--label-names {spec!r} gives two codes the same name")
    return names


def rename_labels(examples: Sequence[Example], names: dict[str, str], where: str = "the data",
                  normalize: bool = True) -> list[Example]:
    """Each example with its label's name; a label that is already a name stays one (a run's
    own test.csv, read back case-folded unless --no-normalize-labels); one that is neither is
    an error naming it."""
    lookup = {**{(n.casefold() if normalize else n): n for n in names.values()}, **names}
    unnamed = sorted({e.label for e in examples} - lookup.keys())
    if unnamed:
        raise GptclsError(f"--label-names gives no name to label(s) {unnamed[:10]} of {where}; "
                          f"it names {sorted(names)}")
    return [Example(e.text, lookup[e.label]) for e in examples]

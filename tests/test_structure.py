"""The package's shape: no import cycles between gptcls modules (imports inside functions count),
no module importing another's private name, no module over 400 lines, and the README's map of
the package names every module."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "gptcls"
MAX_LINES = 400


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    modules = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = module_files()


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def imports(name: str) -> Iterator[tuple[str, list[str], int]]:
    """(imported gptcls module, names taken from it, line) for every import statement of a
    module, at any depth: module level, inside functions, under `if TYPE_CHECKING`."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"), str(MODULES[name]))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's own package, then up
                base = name.split(".") if is_package(name) else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == PACKAGE:
                yield target, [a.name for a in node.names], node.lineno


def edges(name: str) -> set[str]:
    """The gptcls modules `name` imports: `from pkg import sub` counts as importing pkg.sub."""
    out = set()
    for target, names, _ in imports(name):
        submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
        out.update(submodules)
        if len(submodules) < len(names) or not names:
            while target not in MODULES and "." in target:  # `import gptcls.x.y` of a name
                target = target.rsplit(".", 1)[0]
            out.add(target)
    out.discard(name)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a list of modules, the first repeated at the end) per strongly connected
    component of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [cycle_in(graph, set(c)) for c in components]


def cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first search)."""
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & component):
            if w == start:
                return paths[v] + [start]
            if w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    return sorted(component)  # unreachable for a strongly connected component


def test_the_module_list_covers_the_package():
    assert {"gptcls", "gptcls.cli.main", "gptcls.classifier.model"} <= set(MODULES)
    graph = {m: edges(m) for m in MODULES}
    assert "gptcls.classifier.model" in graph["gptcls.classifier.run_dir"]
    assert sum(len(e) for e in graph.values()) > len(MODULES)  # the walk sees the imports


def test_cycle_finder_sees_function_level_and_submodule_imports():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    graph = {m: edges(m) for m in MODULES}
    found = cycles(graph)
    for cycle in found:
        print("import cycle: " + " -> ".join(cycle))
    assert not found, f"{len(found)} import cycle(s): " + "; ".join(" -> ".join(c) for c in found)


def test_no_module_imports_a_private_name_of_another():
    offenders = []
    for name in MODULES:
        for target, names, line in imports(name):
            private = [n for n in [*names, *target.split(".")]
                       if n.startswith("_") and not n.startswith("__")]
            if private:
                offenders.append(f"{MODULES[name].relative_to(SRC)}:{line} imports "
                                 f"{', '.join(private)} from {target}")
    for offender in offenders:
        print(offender)
    assert not offenders, "\n".join(offenders)


def test_no_module_over_400_lines():
    lengths = {name: len(path.read_text(encoding="utf-8").splitlines())
               for name, path in MODULES.items()}
    longest = max(lengths, key=lengths.__getitem__)
    print(f"longest module: {longest} ({lengths[longest]} lines)")
    too_long = {n: k for n, k in sorted(lengths.items()) if k > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"


def top_level_names(name: str) -> set[str]:
    """Names a module defines itself: functions, classes and assignments at module level
    (including under `if`/`try`), not names it imported."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in tree.body:
        for sub in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node]:
            if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found.add(sub.name)
            elif isinstance(sub, (ast.Assign, ast.AnnAssign)):
                targets = sub.targets if isinstance(sub, ast.Assign) else [sub.target]
                found |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return found


def test_names_are_imported_from_the_module_that_defines_them():
    """No re-export shims: `from gptcls.x import f` only where gptcls.x defines f (or f is a
    submodule). Moving a name means updating its callers, so the code says where things live."""
    offenders = []
    for name in MODULES:
        for target, names, line in imports(name):
            if target not in MODULES:
                continue
            foreign = [n for n in names if n not in top_level_names(target)
                       and f"{target}.{n}" not in MODULES]
            if foreign:
                offenders.append(f"{MODULES[name].relative_to(SRC)}:{line} imports "
                                 f"{', '.join(foreign)} from {target}, which does not define it")
    for offender in offenders:
        print(offender)
    assert not offenders, "\n".join(offenders)


def readme_map() -> str:
    """The README's map of src/gptcls/ (the code block under Development that starts with it)."""
    readme = (SRC.parent / "README.md").read_text(encoding="utf-8")
    start = readme.index("```\nsrc/gptcls/")
    return readme[start:readme.index("```", start + 3)]


def test_readme_map_names_every_module():
    """A module added without a word in the README's map is one a reader cannot find; each is
    named by its file name (`model.py`) or, in a folder listed by kind, its stem (`jsonl`)."""
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*(?:\.py)?", readme_map()))
    missing = [str(path.relative_to(SRC)) for path in MODULES.values()
               if path.stem not in ("__init__", "__main__")
               and path.name not in words and path.stem not in words]
    assert not missing, f"not in README.md's map of src/gptcls/: {missing}"

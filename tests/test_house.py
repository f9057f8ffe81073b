"""The house rules of docs/ARCHITECTURE.md, kept by tests: imports flow down the layers, without a cycle, and
every file name of a run folder or an evaluation folder lives in `fakedetect.runfolder` alone."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import fakedetect.runfolder as runfolder

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "fakedetect"

# The layers of docs/ARCHITECTURE.md, lowest first: a module may import its own layer's modules and lower ones.
LAYERS = [
    ["fakedetect", "errors", "paths", "quiet", "progress", "runfolder", "atomic", "metrics", "domain", "plots",
     "framing", "generators", "trace", "engine", "pixels"],
    ["models"],
    ["config", "card"],
    ["data"],
    ["run"],
    ["training"],
    ["evaluation", "predict", "export", "beam"],
    ["web", "demo"],
    ["cli", "__main__"],
]


def _modules() -> dict[str, Path]:
    out = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = f.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """fakedetect modules that ``path`` imports, at its top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found.update(n for n in names if n in modules)
    return found


def layer(module: str) -> int:
    parts = module.split(".")
    key = parts[1] if len(parts) > 1 else "fakedetect"
    for i, names in enumerate(LAYERS):
        if key in names:
            return i
    raise AssertionError(f"{module} is in no layer of docs/ARCHITECTURE.md: add it to the table and to LAYERS")


def test_imports_flow_down_the_layers_without_a_cycle():
    modules = _modules()
    graph = {m: _imports(p, modules) - {m} for m, p in modules.items()}
    upward = [f"{m} (layer {layer(m)}) imports {d} (layer {layer(d)})"
              for m, deps in graph.items() for d in deps if layer(d) > layer(m)]
    assert not upward, upward
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m, path):
        state[m] = 1
        for d in sorted(graph[m]):
            if d.startswith(m + ".") or m == "fakedetect" or d == "fakedetect":
                continue  # a package importing its own modules (and the root's constants) is no cycle
            assert state.get(d) != 1, f"import cycle: {' -> '.join([*path, d])}"
            if d not in state:
                visit(d, [*path, d])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])


def test_the_layers_name_every_module():
    for m in _modules():
        layer(m)


def _docstrings(tree) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def test_no_folder_file_name_is_written_outside_runfolder():
    names = {v for k, v in vars(runfolder).items() if k.isupper() and isinstance(v, str)}
    names |= set(runfolder.PLOT_FILES.values())
    in_text = [re.compile(r"(?<![\w.])" + re.escape(n) + r"(?!\w)") for n in names if "." in n]
    found = []
    for module, path in _modules().items():
        if module == "fakedetect.runfolder":
            continue
        tree = ast.parse(path.read_text())
        skip = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                text = node.value
                if text in names or any(text.endswith(("/" + n, "'" + n)) for n in names):
                    found.append(f"{path.relative_to(SRC)}:{node.lineno}: {text!r}")
            if isinstance(node, ast.JoinedStr):  # an f-string's literal parts: a file name written into a message
                for part in node.values:
                    if isinstance(part, ast.Constant) and any(pattern.search(part.value) for pattern in in_text):
                        found.append(f"{path.relative_to(SRC)}:{node.lineno}: f-string part {part.value!r}")
    assert not found, found

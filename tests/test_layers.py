"""The layers contract of ``src/rankcore``, checked on the syntax tree of every module.

Layers, bottom to top (a package's own modules share its layer)::

    0 errors   1 core   2 model   3 filters   4 personalize
    5 serve, batch, train, evaluation   6 cli, datasets, __init__, __main__

Rules checked:

(a) every module belongs to a layer;
(b) imports point downward: no import from a higher layer, and none between two different
    packages of the same layer (the layer-6 modules are the top package's own and may import
    each other);
(c) no import cycle between modules (module-level imports; relative imports resolved;
    ``from . import x`` means the submodule ``x`` when there is one);
(d) a rankcore import inside a function carries a comment on its line (or the line above)
    saying why it is not at module level;
(e) only ``rankcore/core/native.py`` imports the compiled extension ``rankcore._core``;
(f) no module over 500 lines, and no function over 80 lines without a comment containing
    ``long:`` on or just above its ``def`` (or decorator) line.

Imports through ``importlib.import_module("rankcore....")`` with a literal name count as imports.
The checker reads source files only (nothing is imported), so it sees the repository's
``src/rankcore`` whichever copy of rankcore the other tests import. The tests at the end run the
checker on small made-up packages, so each rule is shown to catch what it is meant to catch.
"""
from __future__ import annotations

import ast
import io
import textwrap
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PACKAGE = "rankcore"
EXTENSION = "rankcore._core"
EXTENSION_LOADER = "rankcore.core.native"

#: Layer of each top-level name under rankcore (a package or a module).
LAYERS = {
    "errors": 0,
    "core": 1,
    "model": 2,
    "filters": 3,
    "personalize": 4,
    "serve": 5, "batch": 5, "train": 5, "evaluation": 5,
    "cli": 6, "datasets": 6, "__init__": 6, "__main__": 6,
}
#: Top-level modules that are the top package's own (one unit: they may import each other).
TOP_MODULES = frozenset({"cli", "datasets", "__init__", "__main__"})

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
LONG_MARK = "long:"


# --------------------------------------------------------------------------- the checker
@dataclass
class Import:
    """One import statement (or ``importlib.import_module`` call) of a rankcore module."""

    rel: str            # file, relative to the repository root
    line: int
    end_line: int
    text: str           # the statement as written
    targets: list       # rankcore modules it loads (resolved, dotted)
    in_function: bool


@dataclass
class Module:
    name: str           # dotted, e.g. rankcore.core.api ("rankcore" for the package's __init__)
    path: Path
    rel: str            # path shown in messages
    is_package: bool
    source: str
    tree: ast.Module
    comment_lines: dict = field(default_factory=dict)
    imports: list = field(default_factory=list)

    @property
    def top(self) -> str:
        """The first name under rankcore (``__init__`` for the package itself)."""
        parts = self.name.split(".")
        return parts[1] if len(parts) > 1 else "__init__"

    @property
    def unit(self) -> str:
        """What may import itself freely: a top-level package, or the top package's own modules."""
        return PACKAGE if self.top in TOP_MODULES else self.top

    @property
    def layer(self):
        return LAYERS.get(self.top)


def _module_name(path: Path, src: Path) -> tuple:
    parts = list(path.relative_to(src).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def _comment_lines(source: str) -> dict:
    """``{line number: comment text}`` for every line holding a comment."""
    return {tok.start[0]: tok.string
            for tok in tokenize.generate_tokens(io.StringIO(source).readline)
            if tok.type == tokenize.COMMENT}


def _resolve_relative(mod: Module, level: int, name: str | None) -> str:
    base = mod.name.split(".") if mod.is_package else mod.name.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _is_internal(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


class _ImportVisitor(ast.NodeVisitor):
    def __init__(self, mod: Module, known: set):
        self.mod = mod
        self.known = known
        self.depth = 0  # function nesting

    def _add(self, node: ast.AST, targets: list) -> None:
        if not targets:
            return
        text = ast.get_source_segment(self.mod.source, node) or ast.unparse(node)
        self.mod.imports.append(Import(self.mod.rel, node.lineno, node.end_lineno,
                                       " ".join(text.split()), targets, self.depth > 0))

    def _function(self, node) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        self._add(node, [a.name for a in node.names if _is_internal(a.name)])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = _resolve_relative(self.mod, node.level, node.module)
        else:
            base = node.module or ""
        if not _is_internal(base):
            return
        targets = []
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            # ``from pkg import x`` loads the submodule x when there is one, else reads pkg
            t = sub if (sub in self.known or sub == EXTENSION) else base
            if t not in targets:
                targets.append(t)
        self._add(node, targets)

    def visit_Call(self, node: ast.Call) -> None:
        f = node.func
        is_import_module = (isinstance(f, ast.Attribute) and f.attr == "import_module"
                            and isinstance(f.value, ast.Name) and f.value.id == "importlib") \
            or (isinstance(f, ast.Name) and f.id == "import_module")
        if is_import_module and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            name = node.args[0].value
            if name.startswith("."):
                level = len(name) - len(name.lstrip("."))
                name = _resolve_relative(self.mod, level, name.lstrip(".") or None)
            if _is_internal(name):
                self._add(node, [name])
        self.generic_visit(node)


def load_modules(src: Path = SRC) -> dict:
    """Every module under ``src/rankcore``, parsed, with its rankcore imports resolved."""
    root = src / PACKAGE
    if not (root / "__init__.py").is_file():
        raise FileNotFoundError(f"{root} is not a package")
    modules = {}
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        name, is_package = _module_name(path, src)
        source = path.read_text(encoding="utf-8")
        try:
            rel = str(path.relative_to(REPO))
        except ValueError:
            rel = str(path)
        modules[name] = Module(name, path, rel, is_package, source,
                               ast.parse(source, filename=str(path)), _comment_lines(source))
    known = set(modules)
    for mod in modules.values():
        _ImportVisitor(mod, known).visit(mod.tree)
    return modules


def unlayered(modules: dict) -> list:
    """(a) Modules whose top-level name has no layer."""
    return [f"{m.rel}: module {m.name} belongs to no layer (top-level name {m.top!r} is not in "
            f"LAYERS)" for m in modules.values() if m.layer is None]


def upward_imports(modules: dict) -> list:
    """(b) Imports from a higher layer, from a same-layer sibling package, or of nothing."""
    out = []
    for m in modules.values():
        if m.layer is None:
            continue
        for imp in m.imports:
            for t in imp.targets:
                if t == EXTENSION:
                    continue  # rule (e)
                target = modules.get(t)
                where = f"{imp.rel}:{imp.line}: `{imp.text}`"
                if target is None:
                    out.append(f"{where} imports {t}, which is no module under src/{PACKAGE}")
                elif target.layer is None or target.unit == m.unit:
                    continue
                elif target.layer > m.layer:
                    out.append(f"{where} imports {t} (layer {target.layer}, {target.unit}) "
                               f"from layer {m.layer} ({m.unit})")
                elif target.layer == m.layer:
                    out.append(f"{where} imports {t} from {m.unit}: packages of the same layer "
                               f"({m.layer}) do not import each other")
    return out


def import_cycles(modules: dict) -> list:
    """(c) Cycles among module-level imports (strongly connected components, Tarjan)."""
    edges: dict = {name: {} for name in modules}
    for m in modules.values():
        for imp in m.imports:
            if imp.in_function:
                continue
            for t in imp.targets:
                if t in modules:
                    edges[m.name].setdefault(t, imp)

    index: dict = {}
    low: dict = {}
    stack: list = []
    on_stack: set = set()
    components: list = []
    counter = [0]

    def connect(v: str) -> None:  # recursion depth is bounded by the number of modules
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            components.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            connect(v)

    out = []
    for comp in components:
        if len(comp) == 1 and comp[0] not in edges[comp[0]]:
            continue
        members = set(comp)
        links = [f"{modules[a].rel}:{imp.line}: `{imp.text}` ({a} -> {b})"
                 for a in comp for b, imp in sorted(edges[a].items()) if b in members]
        out.append("import cycle among " + ", ".join(comp) + ":\n      " + "\n      ".join(links))
    return out


def unexplained_function_imports(modules: dict) -> list:
    """(d) rankcore imports inside functions without a comment on their line or the one above."""
    out = []
    for m in modules.values():
        for imp in m.imports:
            if not imp.in_function:
                continue
            lines = range(imp.line - 1, imp.end_line + 1)
            if not any(n in m.comment_lines for n in lines):
                out.append(f"{imp.rel}:{imp.line}: `{imp.text}` inside a function without a "
                           "comment saying why")
    return out


def extension_imports(modules: dict) -> list:
    """(e) Imports of rankcore._core anywhere but rankcore/core/native.py."""
    return [f"{imp.rel}:{imp.line}: `{imp.text}` imports {EXTENSION}; only "
            f"{EXTENSION_LOADER} may (use `from ..core import native`)"
            for m in modules.values() if m.name != EXTENSION_LOADER
            for imp in m.imports if EXTENSION in imp.targets]


def long_modules(modules: dict) -> list:
    """(f) Modules over MAX_MODULE_LINES lines."""
    out = []
    for m in modules.values():
        n = len(m.source.splitlines())
        if n > MAX_MODULE_LINES:
            out.append(f"{m.rel}: {n} lines (limit {MAX_MODULE_LINES})")
    return out


def long_functions(modules: dict) -> list:
    """(f) Functions over MAX_FUNCTION_LINES lines with no ``long:`` comment at their head."""
    out = []
    for m in modules.values():
        lines = m.source.splitlines()
        for node in ast.walk(m.tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            n = node.end_lineno - node.lineno + 1
            if n <= MAX_FUNCTION_LINES:
                continue
            first = min([d.lineno for d in node.decorator_list] + [node.lineno])
            head = list(range(first, node.lineno + 1))
            k = first - 1  # the comment lines directly above
            while k >= 1 and lines[k - 1].lstrip().startswith("#"):
                head.append(k)
                k -= 1
            if any(LONG_MARK in m.comment_lines.get(i, "") for i in head):
                continue
            out.append(f"{m.rel}:{node.lineno}: def {node.name}: {n} lines (limit "
                       f"{MAX_FUNCTION_LINES}) without a '# {LONG_MARK} <why>' comment")
    return out


def _check(problems: list) -> None:
    """Fail with one line per problem (and no repr of the parsed tree)."""
    if problems:
        pytest.fail(f"{len(problems)} problem(s):\n  " + "\n  ".join(problems), pytrace=False)


# --------------------------------------------------------------------------- the contract
@pytest.fixture(scope="module")
def modules():
    return load_modules()


def test_the_tree_is_read(modules):
    # the checker must see the real package, or every test below would pass on nothing
    assert {"rankcore", "rankcore.errors", EXTENSION_LOADER} <= set(modules)
    native = modules[EXTENSION_LOADER]
    assert any(EXTENSION in imp.targets for imp in native.imports)


def test_every_module_has_a_layer(modules):
    _check(unlayered(modules))


def test_imports_point_downward(modules):
    _check(upward_imports(modules))


def test_no_import_cycles(modules):
    _check(import_cycles(modules))


def test_imports_inside_functions_say_why(modules):
    _check(unexplained_function_imports(modules))


def test_only_core_native_imports_the_extension(modules):
    _check(extension_imports(modules))


def test_modules_and_functions_are_short(modules):
    _check(long_modules(modules) + long_functions(modules))


# --------------------------------------------------------------------------- the checker itself
def _tree(tmp_path: Path, files: dict) -> dict:
    for rel, text in files.items():
        path = tmp_path / PACKAGE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    root = tmp_path / PACKAGE
    for package in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        (package / "__init__.py").touch()
    return load_modules(tmp_path)


def test_checker_resolves_relative_imports(tmp_path):
    mods = _tree(tmp_path, {
        "core/__init__.py": "from .api import f\n",
        "core/api.py": "from . import native\nfrom .native import g\n",
        "core/native.py": "import importlib\ncore = importlib.import_module('rankcore._core')\n",
        "model/model.py": "from ..core import native, f\nfrom .. import errors\n",
        "errors.py": "",
    })
    assert mods["rankcore.core.api"].imports[0].targets == ["rankcore.core.native"]
    assert mods["rankcore.core.api"].imports[1].targets == ["rankcore.core.native"]
    assert mods["rankcore.model.model"].imports[0].targets == ["rankcore.core.native", "rankcore.core"]
    assert mods["rankcore.model.model"].imports[1].targets == ["rankcore.errors"]
    assert mods[EXTENSION_LOADER].imports[0].targets == [EXTENSION]
    # the layout is clean: core's __init__ -> api -> native is no cycle
    assert import_cycles(mods) == [] and upward_imports(mods) == [] and extension_imports(mods) == []


def test_checker_finds_upward_and_sibling_imports(tmp_path):
    mods = _tree(tmp_path, {
        "model/model.py": "x = 1\n",
        "core/api.py": "from ..model.model import x\n",
        "serve/server.py": "from ..batch import run\n",
        "batch/__init__.py": "def run(): pass\n",
        "filters/__init__.py": "import rankcore\n",
        "cli.py": "from . import datasets\n",
        "datasets.py": "",
        "errors.py": "",
    })
    problems = upward_imports(mods)
    assert len(problems) == 3, problems
    assert any("core/api.py:1: `from ..model.model import x` imports rankcore.model.model (layer 2"
               in p for p in problems)
    assert any("serve/server.py:1: `from ..batch import run`" in p and "same layer" in p
               for p in problems)
    assert any("filters/__init__.py:1: `import rankcore` imports rankcore (layer 6" in p
               for p in problems)


def test_checker_finds_cycles_but_not_lazy_imports(tmp_path):
    mods = _tree(tmp_path, {
        "model/a.py": "from .b import y\nx = 1\n",
        "model/b.py": "from .a import x\ny = 2\n",
        "model/c.py": "def f():\n    from .d import z  # lazy: d imports c\n",
        "model/d.py": "from .c import f\nz = 3\n",
    })
    problems = import_cycles(mods)
    assert len(problems) == 1, problems
    assert "rankcore.model.a, rankcore.model.b" in problems[0]
    assert "model/a.py:1: `from .b import y`" in problems[0]
    assert unexplained_function_imports(mods) == []


def test_checker_finds_unexplained_function_imports(tmp_path):
    mods = _tree(tmp_path, {
        "core/api.py": """\
            import importlib

            def f():
                from . import table
                import json
                return importlib.import_module("rankcore.core.table")

            def g():
                # optional: only some callers need it
                from .table import T
                from .table import (  # explained on the first line
                    T as U,
                )
        """,
        "core/table.py": "T = 1\n",
    })
    problems = unexplained_function_imports(mods)
    assert [p.split(": ", 1)[0] for p in problems] == \
        [f"{mods['rankcore.core.api'].rel}:4", f"{mods['rankcore.core.api'].rel}:6"]
    assert "`from . import table`" in problems[0]


def test_checker_finds_extension_imports(tmp_path):
    mods = _tree(tmp_path, {
        "core/native.py": "from .. import _core\n",
        "core/api.py": "from rankcore import _core\n",
        "filters/__init__.py": "import rankcore._core\n",
    })
    problems = extension_imports(mods)
    assert len(problems) == 2, problems
    assert all("only rankcore.core.native may" in p for p in problems)


def test_checker_finds_long_modules_and_functions(tmp_path):
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    mods = _tree(tmp_path, {
        "core/long.py": "x = 1\n" * (MAX_MODULE_LINES + 1),
        "core/funcs.py": (f"def too_long():\n{body}\n"
                          f"# long: one table, read top to bottom\ndef explained():\n{body}\n"
                          f"@staticmethod\ndef decorated():  # long: a flat list of cases\n{body}\n"
                          f"def short():\n{body[:-len('    x79 = 79')-1]}\n"),
    })
    assert [p.split(":")[0] for p in long_modules(mods)] == [mods["rankcore.core.long"].rel]
    problems = long_functions(mods)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{mods['rankcore.core.funcs'].rel}:1: def too_long: 81 lines")

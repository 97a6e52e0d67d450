"""The architecture rules of issue 10, checked on the source of ``mlpx/`` with :mod:`ast`.

1. No import cycles among mlpx modules, counting imports inside functions (an import in a
   function body still makes the two modules depend on each other; only imports under
   ``if TYPE_CHECKING:`` are left out, as they never run).
2. No mlpx module uses another mlpx module's underscore names: not
   ``from .io import _read_checkpoint``, not ``_io._read_checkpoint(...)`` where ``_io`` is
   bound to an mlpx module, and not ``obj._name`` on an object other than ``self``/``cls``
   (``model._train_rng``, ``self.model._optimizer``, ``layers[0]._cache``,
   ``getattr(obj, "_x")``), unless the enclosing class itself defines ``_name`` (``other._x``
   in ``__eq__``). Private *modules* (``mlpx._backend``, ``mlpx._fast._step``) may be
   imported; only their public names may be used.

The checker is a few small functions below; ``test_checker_*`` prove on synthetic sources
that it finds what it should and nothing else, so the two repository-wide tests can fail.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "mlpx"

# Public helpers of namedtuple despite their underscore.
NAMEDTUPLE_API = frozenset({"_replace", "_asdict", "_fields", "_make", "_field_defaults"})


# ------------------------------------------------------------------ reading the package
@dataclass(frozen=True)
class Source:
    module: str       # "mlpx.io", "mlpx._fast" (a package's __init__)
    path: str         # shown in messages, e.g. "mlpx/io.py"
    text: str
    is_package: bool  # an __init__.py


def package_sources(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Source]:
    """Every module of ``package`` under ``root``: ``{module name: Source}``."""
    sources = {}
    for path in sorted((root / package).rglob("*.py")):
        rel = path.relative_to(root)
        parts = list(rel.with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        module = ".".join(parts)
        sources[module] = Source(module, rel.as_posix(), path.read_text(encoding="utf-8"),
                                 is_package)
    return sources


def sources_from_strings(files: dict[str, str]) -> dict[str, Source]:
    """Synthetic sources for the self-tests: ``{"pkg/a.py": text}``."""
    sources = {}
    for path, text in files.items():
        parts = path[:-3].split("/")
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        module = ".".join(parts)
        sources[module] = Source(module, path, text, is_package)
    return sources


# ------------------------------------------------------------------ imports
@dataclass(frozen=True)
class Import:
    target: str         # the module whose code the import runs (and depends on)
    names: tuple        # names taken from it (from-imports), else ()
    line: int


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _resolve_from(source: Source, node: ast.ImportFrom) -> str:
    """The absolute module named by a (possibly relative) ``from ... import``."""
    if node.level == 0:
        return node.module or ""
    package = source.module.split(".")
    if not source.is_package:
        package = package[:-1]
    if node.level > 1:
        package = package[:len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def imports_of(source: Source, modules, tree=None) -> list[Import]:
    """The imports of mlpx modules in ``source``, anywhere in the file (functions too).

    ``from . import io`` depends on ``mlpx.io`` when that is a module, on the package
    ``mlpx`` (its ``__init__``) for any other name.
    """
    tree = tree if tree is not None else ast.parse(source.text, source.path)
    root = source.module.split(".")[0]
    found = []
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == root and alias.name in modules:
                    found.append(Import(alias.name, (), node.lineno))
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(source, node)
            if base.split(".")[0] != root:
                continue
            plain = []
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in modules:
                    found.append(Import(sub, (), node.lineno))
                else:
                    plain.append(alias.name)
            if plain and base in modules:
                found.append(Import(base, tuple(plain), node.lineno))
    return found


def import_graph(sources: dict[str, Source]) -> dict[str, dict[str, list[str]]]:
    """``{module: {imported module: ["path:line", ...]}}`` for every mlpx module."""
    graph: dict[str, dict[str, list[str]]] = {m: {} for m in sources}
    for module, source in sources.items():
        for imp in imports_of(source, sources):
            if imp.target != module:
                graph[module].setdefault(imp.target, []).append(f"{source.path}:{imp.line}")
    return graph


def tangles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """The strongly connected components of two or more modules (each sorted)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []

    def connect(v):  # Tarjan; the package is small, recursion depth is no concern
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
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
            connect(v)
    return sorted(components)


def find_cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """One shortest cycle ``[a, b, ..., a]`` through the first module of every tangle."""
    cycles = []
    for component in tangles(graph):
        members = set(component)
        start = component[0]
        # Shortest way back to start (breadth first), inside the component.
        parents = {start: None}
        queue = [start]
        end = None
        while queue and end is None:
            v = queue.pop(0)
            for w in sorted(graph[v]):
                if w not in members:
                    continue
                if w == start:
                    end = v
                    break
                if w not in parents:
                    parents[w] = v
                    queue.append(w)
        chain = []  # end, its parent, ..., start
        while end is not None:
            chain.append(end)
            end = parents[end]
        cycles.append(chain[::-1] + [start])
    return cycles


def describe_cycles(graph) -> str:
    """Every tangle: an example cycle, then every import inside it (path:line)."""
    lines = []
    for component, cycle in zip(tangles(graph), find_cycles(graph)):
        lines.append(f"{len(component)} modules import each other, e.g. "
                     + " -> ".join(cycle) + ":")
        for a in component:
            for b in sorted(graph[a]):
                if b in component:
                    where = sorted(graph[a][b], key=lambda w: (w.rsplit(":", 1)[0],
                                                               int(w.rsplit(":", 1)[1])))
                    lines.append(f"    {a} -> {b}  ({', '.join(where)})")
    return "\n".join(lines)


# ------------------------------------------------------------------ underscore names
def _private(name: str) -> bool:
    return (name.startswith("_") and not (name.startswith("__") and name.endswith("__"))
            and name not in NAMEDTUPLE_API)


def _own_private_names(cls: ast.ClassDef, same_file: dict | None = None) -> set[str]:
    """Underscore names a class defines: methods, class attributes, ``self._x = ...``,
    and those of its base classes defined in the same file (``same_file``: name -> node).
    """
    names = set()
    same_file = same_file or {}
    for base in cls.bases:
        if isinstance(base, ast.Name) and base.id in same_file and base.id != cls.name:
            names |= _own_private_names(same_file.pop(base.id), same_file)
    for item in cls.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(item.name)
        elif isinstance(item, (ast.Assign, ast.AnnAssign)):
            targets = item.targets if isinstance(item, ast.Assign) else [item.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    for node in ast.walk(cls):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and \
                isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            names.add(node.attr)
    return {n for n in names if _private(n)}


class _PrivateAccess(ast.NodeVisitor):
    def __init__(self, source: Source, modules):
        self.source = source
        self.modules = modules
        self.root = source.module.split(".")[0]
        self.found: list[str] = []
        self.bound: dict[str, str] = {}   # name -> mlpx module it is bound to
        self.external: set[str] = set()   # names bound to other libraries' modules
        self.classes: list[tuple[ast.ClassDef, set[str]]] = []
        self.selves: list[str] = []       # first parameters of the enclosing methods
        self.class_defs: dict[str, ast.ClassDef] = {}  # module-level classes by name

    def report(self, node, text):
        self.found.append(f"{self.source.path}:{node.lineno}: {text}")

    # -- bindings
    def bind_imports(self, tree):
        self.class_defs = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
        for node in _runtime_nodes(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    top = alias.name.split(".")[0]
                    if alias.asname:
                        if alias.name in self.modules:
                            self.bound[alias.asname] = alias.name
                        else:
                            self.external.add(alias.asname)
                    elif top == self.root:
                        self.bound[top] = top
                    else:
                        self.external.add(top)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve_from(self.source, node)
                for alias in node.names:
                    name = alias.asname or alias.name
                    if f"{base}.{alias.name}" in self.modules:
                        self.bound[name] = f"{base}.{alias.name}"
                    elif base.split(".")[0] != self.root:
                        self.external.add(name)

    # -- scopes
    def visit_ClassDef(self, node):
        for child in node.bases + node.keywords + node.decorator_list:
            self.visit(child)
        self.classes.append((node, _own_private_names(node, dict(self.class_defs))))
        for item in node.body:
            self.visit(item)
        self.classes.pop()

    def visit_FunctionDef(self, node):
        # A method's first parameter is its own object (``self``, ``cls`` or any name),
        # also inside functions nested in the method; not a staticmethod's.
        is_method = bool(self.classes) and node in self.classes[-1][0].body
        static = any(isinstance(d, ast.Name) and d.id == "staticmethod"
                     for d in node.decorator_list)
        args = node.args.posonlyargs + node.args.args
        pushed = is_method and not static and bool(args)
        if pushed:
            self.selves.append(args[0].arg)
        self.generic_visit(node)
        if pushed:
            self.selves.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    # -- rules
    def visit_ImportFrom(self, node):
        base = _resolve_from(self.source, node)
        if base.split(".")[0] == self.root and base != self.source.module:
            for alias in node.names:
                if _private(alias.name) and f"{base}.{alias.name}" not in self.modules:
                    self.report(node, f"from {base} import {alias.name}")

    def module_of(self, expr) -> str | None:
        """The mlpx module ``expr`` names (``_io``, ``mlpx.io``), else None."""
        if isinstance(expr, ast.Name):
            return self.bound.get(expr.id)
        if isinstance(expr, ast.Attribute):
            parent = self.module_of(expr.value)
            if parent is not None and f"{parent}.{expr.attr}" in self.modules:
                return f"{parent}.{expr.attr}"
        return None

    def is_own_object(self, expr) -> bool:
        """``self``, ``cls``, ``super()``, ``type(self)`` or the enclosing class by name."""
        if isinstance(expr, ast.Name):
            return (expr.id in ("self", "cls") or expr.id in self.selves
                    or any(expr.id == cls.name for cls, _ in self.classes))
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):
            if expr.func.id == "super":
                return True
            if expr.func.id == "type" and len(expr.args) == 1:
                return self.is_own_object(expr.args[0])
        return False

    def check(self, node, receiver, name):
        if not _private(name) or self.is_own_object(receiver):
            return
        module = self.module_of(receiver)
        if module is not None:
            if module != self.source.module:
                self.report(node, f"{ast.unparse(receiver)}.{name} "
                                  f"(private name of {module})")
            return
        if isinstance(receiver, ast.Name) and receiver.id in self.external:
            return  # another library's module: not this rule's business
        if self.classes and name in self.classes[-1][1]:
            return  # another instance of the enclosing class (``other._x`` in __eq__)
        self.report(node, f"{ast.unparse(receiver)}.{name} (private attribute of an object "
                          "other than self)")

    def visit_Attribute(self, node):
        self.check(node, node.value, node.attr)
        self.generic_visit(node)

    def visit_Call(self, node):
        func = node.func
        if (isinstance(func, ast.Name) and func.id in ("getattr", "setattr", "hasattr",
                                                       "delattr")
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)):
            self.check(node, node.args[0], node.args[1].value)
        self.generic_visit(node)

    def visit_If(self, node):
        if _is_type_checking(node.test):
            for item in node.orelse:
                self.visit(item)
            return
        self.generic_visit(node)


def private_accesses(sources: dict[str, Source]) -> list[str]:
    """``path:line: what`` for every use of another module's or object's private name."""
    found = []
    for source in sources.values():
        tree = ast.parse(source.text, source.path)
        visitor = _PrivateAccess(source, sources)
        visitor.bind_imports(tree)
        visitor.visit(tree)
        found.extend(visitor.found)
    return found


# ------------------------------------------------------------------ self-tests of the checker
def test_checker_resolves_imports_everywhere():
    sources = sources_from_strings({
        "pkg/__init__.py": "from .a import f\n__version__ = '1'\n",
        "pkg/a.py": "def f():\n    from . import b\n    return b\n",
        "pkg/b.py": "import pkg.c\nfrom . import __version__\n",
        "pkg/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                    "    from .a import f\n",
        "pkg/sub/__init__.py": "from .. import a\nfrom ..b import x\nfrom .d import y\n",
        "pkg/sub/d.py": "import numpy as np\nfrom ... import nothing\n",
    })
    graph = import_graph(sources)
    assert graph == {
        "pkg": {"pkg.a": ["pkg/__init__.py:1"]},
        "pkg.a": {"pkg.b": ["pkg/a.py:2"]},          # inside a function
        "pkg.b": {"pkg.c": ["pkg/b.py:1"], "pkg": ["pkg/b.py:2"]},
        "pkg.c": {},                                   # TYPE_CHECKING only
        "pkg.sub": {"pkg.a": ["pkg/sub/__init__.py:1"], "pkg.b": ["pkg/sub/__init__.py:2"],
                    "pkg.sub.d": ["pkg/sub/__init__.py:3"]},
        "pkg.sub.d": {},
    }
    cycles = find_cycles(graph)
    assert cycles == [["pkg", "pkg.a", "pkg.b", "pkg"]]
    assert tangles(graph) == [["pkg", "pkg.a", "pkg.b"]]
    assert describe_cycles(graph).splitlines() == [
        "3 modules import each other, e.g. pkg -> pkg.a -> pkg.b -> pkg:",
        "    pkg -> pkg.a  (pkg/__init__.py:1)",
        "    pkg.a -> pkg.b  (pkg/a.py:2)",
        "    pkg.b -> pkg  (pkg/b.py:2)",
    ]


def test_checker_finds_no_cycle_in_a_tree_and_every_component():
    sources = sources_from_strings({
        "pkg/__init__.py": "", "pkg/a.py": "from . import b\n", "pkg/b.py": "",
        "pkg/x.py": "from .y import f\n", "pkg/y.py": "def f():\n    import pkg.x\n",
    })
    assert find_cycles(import_graph(sources)) == [["pkg.x", "pkg.y", "pkg.x"]]
    del sources["pkg.y"]
    assert find_cycles(import_graph(sources)) == []


def test_checker_finds_private_names():
    sources = sources_from_strings({
        "pkg/__init__.py": "",
        "pkg/_priv.py": "def helper(): pass\ndef _inner(): pass\n",
        "pkg/io.py": "def _read(): pass\nclass Box:\n    def __init__(self):\n"
                     "        self._v = 1\n",
        "pkg/user.py": (
            "import os, numpy as np\n"
            "import pkg.io\n"
            "from . import io as _io, _priv\n"
            "from .io import _read\n"                         # 4: violation
            "from ._priv import helper\n"                     # private module: fine
            "from collections import namedtuple\n"
            "def f(model, box):\n"
            "    _io._read()\n"                               # 8: violation
            "    pkg.io._read()\n"                            # 9: violation
            "    _priv._inner()\n"                            # 10: violation
            "    _priv.helper(); os._exit; np._core\n"        # fine
            "    model._rng.random()\n"                       # 12: violation
            "    getattr(box, '_v')\n"                        # 13: violation
            "    box.__class__; box._replace(v=2)\n"          # fine
            "class Model:\n"
            "    def __init__(self):\n"
            "        self._w = 0\n"
            "        self.other = None\n"
            "    def __eq__(self, other):\n"
            "        return self._w == other._w\n"            # fine: same class
            "    def g(self):\n"
            "        def inner():\n"
            "            return self._w + type(self)._w + Model._w\n"  # fine
            "        super()._hidden()\n"                       # fine
            "        return self.other._cache\n"               # 25: violation
            "    @classmethod\n"
            "    def make(cls):\n"
            "        return cls._w\n"                          # fine
            "    @staticmethod\n"
            "    def peek(model):\n"
            "        return model._rng\n"                      # 31: violation
            "class Child(Model):\n"
            "    @decorate(lambda est: est._w)\n"              # fine: inherited here
            "    def h(self, other):\n"
            "        return other._w + other._v\n"            # 35: _v violation
        ),
    })
    found = private_accesses(sources)
    assert found == [
        "pkg/user.py:4: from pkg.io import _read",
        "pkg/user.py:8: _io._read (private name of pkg.io)",
        "pkg/user.py:9: pkg.io._read (private name of pkg.io)",
        "pkg/user.py:10: _priv._inner (private name of pkg._priv)",
        "pkg/user.py:12: model._rng (private attribute of an object other than self)",
        "pkg/user.py:13: box._v (private attribute of an object other than self)",
        "pkg/user.py:25: self.other._cache (private attribute of an object other than self)",
        "pkg/user.py:31: model._rng (private attribute of an object other than self)",
        "pkg/user.py:35: other._v (private attribute of an object other than self)",
    ], "\n".join(found)


# ------------------------------------------------------------------ the package itself
def test_package_sources_are_found():
    sources = package_sources()
    assert {"mlpx", "mlpx.io", "mlpx.cli", "mlpx._backend", "mlpx._fast"} <= set(sources)
    assert sources["mlpx._fast"].path == "mlpx/_fast/__init__.py"
    graph = import_graph(sources)
    assert "mlpx.cli" in graph["mlpx.__main__"]  # ``from .cli import main``


def test_no_import_cycles():
    graph = import_graph(package_sources())
    cycles = find_cycles(graph)
    assert not cycles, "import cycles among mlpx modules:\n" + describe_cycles(graph)


def test_no_module_uses_another_modules_private_names():
    found = private_accesses(package_sources())
    assert not found, (f"{len(found)} uses of private names across modules or objects "
                       "(make the helper public in the module that owns it):\n"
                       + "\n".join(found))


# The layers of docs/internals.md, lowest first: a module imports only from its own layer
# or lower ones.
LAYER_OF = {
    "mlpx._backend": 0, "mlpx._validation": 0, "mlpx._registry": 0, "mlpx._version": 0,
    "mlpx._files": 0,
    "mlpx.activations": 1, "mlpx.losses": 1, "mlpx.initializers": 1, "mlpx.metrics": 1,
    "mlpx.layers": 2, "mlpx.optimizers": 2,
    "mlpx.training": 3, "mlpx.state": 3,
    "mlpx._fast": 4,
    "mlpx.io": 5,
    "mlpx.trainer": 6, "mlpx.export": 6,
    "mlpx.distributed": 7,
    "mlpx.model": 7, "mlpx.callbacks": 7,
    "mlpx.sklearn": 8, "mlpx.cli": 8, "mlpx.toy": 8, "mlpx.plotting": 8,
    "mlpx.datasets": 8, "mlpx.data": 8,
    "mlpx": 9, "mlpx.__main__": 9,
}


def _layer(module):
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        name = ".".join(parts[:i])
        if name in LAYER_OF:
            return LAYER_OF[name]
    raise KeyError(module)


def test_every_module_has_a_layer():
    missing = [m for m in import_graph(package_sources()) if not _has_layer(m)]
    assert not missing, f"add these modules to LAYER_OF (and docs/internals.md): {missing}"


def _has_layer(module):
    try:
        _layer(module)
    except KeyError:
        return False
    return True


def upward_imports(graph):
    """Every import from a module to one of a higher layer (same package excepted)."""
    upward = []
    for src, targets in graph.items():
        for dst in targets:
            same_package = dst.startswith(src + ".") or src.startswith(dst + ".")
            if not same_package and _layer(dst) > _layer(src):
                upward.append(f"{src} (layer {_layer(src)}) imports {dst} "
                              f"(layer {_layer(dst)})")
    return upward


def test_upward_imports_are_found():
    graph = {"mlpx.io": {"mlpx.model": ["mlpx/io.py:1"], "mlpx.layers": ["mlpx/io.py:2"]},
             "mlpx._fast._step": {"mlpx._fast._plan": ["x:1"]}}
    assert upward_imports(graph) == ["mlpx.io (layer 5) imports mlpx.model (layer 7)"]


def test_imports_point_down_the_layers():
    upward = upward_imports(import_graph(package_sources()))
    assert not upward, "imports that point up the layers:\n" + "\n".join(upward)

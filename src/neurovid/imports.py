"""What a rule's script imports: the neurovid files it runs and the third-party packages it needs.

One static walk (the standard library's ``ast``, nothing is imported or run) serves two
users: ``rules/common.smk`` gives each rule the digest of the library files its script
reaches (:func:`code_digest`), so that editing a module re-runs exactly the jobs that
run it, and
``tests/test_envs.py`` checks that each rule's env provides the packages its script
needs. The walk follows ``import`` statements anywhere in a file (inside functions
too: a lazily imported module still runs), except under ``if TYPE_CHECKING:``, from
the script through the library, including every package ``__init__`` on the way
(importing ``neurovid.features.vit`` runs ``neurovid/features/__init__.py`` too).
Imports computed at run time (``importlib.import_module(name)``) are not seen.

Stdlib only: Snakemake imports this module while it parses the workflow. Results are
cached for the life of the process (a Snakemake run parses the workflow once).
"""

from __future__ import annotations

import ast
import hashlib
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PACKAGE = "neurovid"
# Where the library lives: src/ of this checkout (the folder holding the neurovid package).
SRC = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ScriptImports:
    """What one script reaches: neurovid source files (sorted) and top-level third-party modules."""

    library: tuple[Path, ...]
    third_party: frozenset[str]


def module_file(module: str, src: Path = SRC) -> Path | None:
    """The source file of a neurovid module (package ``__init__.py`` or ``module.py``), if any."""
    base = src.joinpath(*module.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(node: ast.If) -> bool:
    """``if TYPE_CHECKING:`` / ``if typing.TYPE_CHECKING:`` (its body never runs)."""
    test = node.test
    return isinstance(test, ast.Name | ast.Attribute) and "TYPE_CHECKING" in ast.unparse(test)


def _package_of(path: Path, src: Path) -> list[str]:
    """Dotted parts of the package a library file belongs to (for relative imports)."""
    try:
        # neurovid/features/vit.py and neurovid/features/__init__.py: neurovid.features
        return list(path.relative_to(src).parts[:-1])
    except ValueError:
        return []  # a script outside the library: it has no package


def _absolute(node: ast.ImportFrom, package: list[str]) -> str | None:
    """The absolute module of ``from ... import``; None for a relative import that leaves the tree."""
    if not node.level:
        return node.module
    if node.level - 1 > len(package):
        return None
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base) or None


@cache
def imports_of(path: Path, src: Path = SRC) -> frozenset[str]:
    """Absolute module names a file imports (anywhere in it, but not under TYPE_CHECKING).

    ``from a.b import c`` yields ``a.b`` and ``a.b.c`` (``c`` may be a submodule);
    relative imports are resolved against the file's package under ``src``. Cached per
    file: every script's walk reads each library file once.
    """
    package = _package_of(path, src)
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, package)
            if module:
                found.add(module)
                found.update(f"{module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return frozenset(found)


def _library_files(module: str, src: Path) -> list[Path]:
    """The files importing ``module`` runs: each package on its way, then the module itself."""
    parts = module.split(".")
    found = (module_file(".".join(parts[:depth]), src) for depth in range(1, len(parts) + 1))
    return [f for f in found if f is not None]


@cache
def script_imports(script: Path, src: Path = SRC) -> ScriptImports:
    """Follow a script's imports through the neurovid library under ``src`` (cached per script)."""
    library: set[Path] = set()
    third_party: set[str] = set()
    todo, seen = [Path(script)], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for module in imports_of(current, src):
            top = module.split(".")[0]
            if top == PACKAGE:
                files = _library_files(module, src)
                library.update(files)
                todo.extend(files)
            elif top != "__future__" and top not in sys.stdlib_module_names:
                third_party.add(top)
    return ScriptImports(tuple(sorted(library)), frozenset(third_party))


@cache
def code_digest(script: Path, src: Path = SRC) -> str:
    """sha256 over the script and the library files it reaches: their paths (under ``src``) and bytes.

    It changes exactly when one of those files' contents changes, not when a copy of the
    project moves them elsewhere or a checkout touches them without a change.
    """
    h = hashlib.sha256()
    for path in (Path(script), *script_imports(script, src).library):
        name = path.relative_to(src) if path.is_relative_to(src) else Path(path.name)
        h.update(f"{name.as_posix()}\0".encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return f"sha256:{h.hexdigest()[:16]}"

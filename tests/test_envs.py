"""Per-stage software environments: every rule has one, it provides what the rule imports,
and its pins agree with the stage's pip extra in pyproject.toml and with constraints.txt
(the pose stage: constraints-pose.txt, its own env because DeepLabCut needs pandas<3).

The envs cannot be built here (no conda-forge), so these static checks guard them.
They read every rule's ``conda:`` and ``script:``, follow the script's imports
through the neurovid library, and so also cover rules and envs added later.
The library itself reaches the envs through PYTHONPATH (rules/common.smk), so
envs hold third-party packages only.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
# Not stage packages: the interpreter and its installer.
TOOLS = {"python", "pip"}
# conda-forge names that differ from the PyPI name.
CONDA_TO_PIP = {
    "pytorch": "torch",
    "matplotlib-base": "matplotlib",
    "py-opencv": "opencv-python",
    "pytables": "tables",
}
# Stages whose env cannot share constraints.txt, and their own constraints file.
# pose: DeepLabCut 3.0.2 needs pandas<3 and filelock<3.16; the other stages run pandas 3.
OWN_CONSTRAINTS = {"pose": "constraints-pose.txt"}
# The only pins an own constraints file may change from constraints.txt.
OWN_CONSTRAINTS_DIFFER = {"pose": {"pandas", "filelock"}}
# Import names of packages that may not be installed where the tests run.
IMPORT_TO_DIST = {"torch": "torch", "torchvision": "torchvision", "transformers": "transformers"}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def rule_blocks() -> dict[str, dict[str, Path]]:
    """{rule: {"file", "conda", "script"}} from rules/*.smk (snakefmt-formatted)."""
    rules: dict[str, dict[str, Path]] = {}
    for smk in sorted((REPO / "rules").glob("*.smk")):
        parts = re.split(r"^(?:rule|checkpoint) (\w+):\n", smk.read_text(), flags=re.M)
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            block = {"file": smk}
            for directive in ("conda", "script"):
                found = re.search(rf'^    {directive}:\n        "([^"]+)"', body, flags=re.M)
                if found:
                    block[directive] = (smk.parent / found.group(1)).resolve()
            rules[name] = block
    return rules


def module_file(module: str) -> Path | None:
    """The source file of a neurovid module (package __init__ or module.py)."""
    base = SRC.joinpath(*module.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name | ast.Attribute) and "TYPE_CHECKING" in ast.unparse(
        node.test
    )


def imports_of(path: Path) -> set[str]:
    """Absolute module names a file imports (anywhere in it, but not under TYPE_CHECKING)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and is_type_checking(node):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            # `from neurovid import io` imports the submodule neurovid.io
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found


@cache
def third_party_imports(path: Path) -> frozenset[str]:
    """Top-level third-party modules a script needs, following imports into neurovid."""
    needed: set[str] = set()
    seen: set[Path] = set()
    todo = [path]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for module in imports_of(current):
            top = module.split(".")[0]
            if top == "neurovid":
                parts = module.split(".")
                # the module and every package on its way (their __init__ runs too)
                for depth in range(1, len(parts) + 1):
                    source = module_file(".".join(parts[:depth]))
                    if source:
                        todo.append(source)
            elif top == "snakemake":
                continue  # the script preamble provides it in every env
            elif top not in sys.stdlib_module_names and top != "__future__":
                needed.add(top)
    return frozenset(needed)


@cache
def distributions_of(module: str) -> frozenset[str]:
    """Normalized distribution names that provide an import name."""
    mapping = importlib.metadata.packages_distributions()
    names = mapping.get(module) or [IMPORT_TO_DIST.get(module, module)]
    return frozenset(normalize(name) for name in names)


def env_pins(env_file: Path) -> dict[str, str]:
    """{normalized PyPI name: pinned version} of a conda env file (conda and pip parts)."""
    spec = yaml.safe_load(env_file.read_text())
    pins: dict[str, str] = {}
    for entry in spec["dependencies"]:
        if isinstance(entry, dict):
            for requirement in entry.get("pip") or []:
                name, _, version = requirement.partition("==")
                pins[normalize(name)] = version
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(?:==?\s*([^\s=]+))?", entry)
        assert match, f"{env_file.name}: cannot read dependency {entry!r}"
        name, version = match.group(1), match.group(2) or ""
        if name in TOOLS:
            continue
        pins[normalize(CONDA_TO_PIP.get(name, name))] = version
    return pins


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def constraints(name: str = "constraints.txt") -> dict[str, str]:
    pins = {}
    for line in (REPO / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[normalize(name)] = version.strip()
    return pins


ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))
RULES = rule_blocks()


def test_the_rules_are_found() -> None:
    assert {"probe", "standardize", "motion_energy", "ingest", "encode", "group_stats"} <= set(
        RULES
    )
    assert RULES["encode"]["conda"] == REPO / "envs/encoding.yaml"
    assert RULES["probe"]["script"] == REPO / "scripts/probe.py"


@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_rule_runs_a_script_in_an_existing_env(rule: str) -> None:
    block = RULES[rule]
    if "script" not in block:
        pytest.skip(f"{rule} runs no script")
    assert "conda" in block, f"rule {rule} ({block['file'].name}) has no conda: env"
    assert block["conda"].is_file(), f"rule {rule}: {block['conda']} does not exist"
    assert block["script"].is_file(), f"rule {rule}: {block['script']} does not exist"


@pytest.mark.parametrize("rule", sorted(r for r in RULES if {"conda", "script"} <= set(RULES[r])))
def test_the_env_provides_every_module_the_script_imports(rule: str) -> None:
    block = RULES[rule]
    provided = set(env_pins(block["conda"]))
    missing = {
        module: sorted(distributions_of(module))
        for module in sorted(third_party_imports(block["script"]))
        if not distributions_of(module) & provided
    }
    assert not missing, (
        f"rule {rule}: {block['conda'].relative_to(REPO)} lacks what {block['script'].name} "
        f"imports (module: distributions): {missing}"
    )


def test_the_import_scan_follows_the_library() -> None:
    # probe.py imports neurovid.video, which imports PyAV and imageio-ffmpeg.
    needed = third_party_imports(REPO / "scripts/probe.py")
    assert {"av", "numpy", "h5py"} <= needed
    assert "neurovid" not in needed and "json" not in needed
    assert distributions_of("sklearn") == {"scikit-learn"}
    assert distributions_of("moten") == {"pymoten"}


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda p: p.stem)
def test_env_pins_agree_with_the_stage_extra_and_the_constraints(env_file: Path) -> None:
    pins = env_pins(env_file)
    assert pins and all(pins.values()), f"{env_file.name}: unpinned packages {pins}"
    extras = pyproject()["project"]["optional-dependencies"]
    assert env_file.stem in extras, f"pyproject.toml has no extra [{env_file.stem}]"
    extra = {}
    for line in extras[env_file.stem]:
        requirement = Requirement(line)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", f"unpinned: {line}"
        extra[normalize(requirement.name)] = specifiers[0].version
    assert pins == extra, f"{env_file.name} vs pyproject [{env_file.stem}]"
    constraints_file = OWN_CONSTRAINTS.get(env_file.stem, "constraints.txt")
    pinned = constraints(constraints_file)
    for name, version in pins.items():
        assert pinned.get(name) == version, (
            f"{env_file.name}: {name} {version} vs {constraints_file}"
        )


@pytest.mark.parametrize("stage", sorted(OWN_CONSTRAINTS))
def test_own_constraints_change_only_what_the_stage_needs(stage: str) -> None:
    # Packages both files pin keep the main version (same numpy, h5py, torch, snakemake
    # in every env), except the few the stage's tool needs otherwise.
    main, own = constraints(), constraints(OWN_CONSTRAINTS[stage])
    changed = {name for name in main.keys() & own.keys() if main[name] != own[name]}
    assert changed == OWN_CONSTRAINTS_DIFFER[stage], {n: (main[n], own[n]) for n in changed}
    base = {normalize(Requirement(r).name) for r in pyproject()["project"]["dependencies"]}
    assert base <= own.keys(), f"{OWN_CONSTRAINTS[stage]} lacks {sorted(base - own.keys())}"


def test_env_files_use_conda_forge_and_python_311() -> None:
    for env_file in ENV_FILES:
        spec = yaml.safe_load(env_file.read_text())
        assert spec["channels"] == ["conda-forge", "nodefaults"], env_file.name
        assert "python=3.11" in spec["dependencies"], env_file.name


def test_the_base_install_has_no_torch_or_deeplabcut() -> None:
    base = {normalize(Requirement(r).name) for r in pyproject()["project"]["dependencies"]}
    assert not base & {"torch", "torchvision", "deeplabcut", "tensorflow"}

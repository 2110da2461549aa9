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

import importlib.metadata
import os
import re
import tomllib
from functools import cache
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from neurovid.imports import code_digest, imports_of, script_imports

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


def third_party_imports(path: Path) -> frozenset[str]:
    """Top-level third-party modules a script needs, following its imports into neurovid.

    The same walk gives each rule its `code` param (rules/common.smk). snakemake is left
    out: the script preamble provides it in every env.
    """
    return script_imports(path.resolve(), SRC).third_party - {"snakemake"}


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


def library_tree(root: Path) -> Path:
    """A small neurovid package and a script using it (src/ and scripts/ under root)."""
    files = {
        "src/neurovid/__init__.py": "",
        "src/neurovid/errors.py": "class InputError(ValueError): ...\n",
        # relative import and a third-party one
        "src/neurovid/a.py": "import numpy\n\nfrom . import b\n",
        "src/neurovid/b.py": "from neurovid.errors import InputError\n",
        # a package: its __init__ runs, and its relative import is followed
        "src/neurovid/pkg/__init__.py": "from .c import run\n",
        # an import inside a function still runs when the function does
        "src/neurovid/pkg/c.py": "def run():\n    import torch\n",
        # only for type checkers: never imported at run time
        "src/neurovid/typed.py": "import h5py\n",
        "src/neurovid/unused.py": "import scipy\n",
        "scripts/step.py": (
            "from typing import TYPE_CHECKING\n\nimport yaml\n\n"
            "from neurovid.a import b\nfrom neurovid.pkg import c\n\n"
            "if TYPE_CHECKING:\n    from neurovid import typed\nelse:\n    import json\n"
        ),
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_walk_follows_packages_relative_and_lazy_imports_but_not_type_checking(
    tmp_path: Path,
) -> None:
    root = library_tree(tmp_path)
    src = root / "src"
    found = script_imports(root / "scripts/step.py", src)
    assert [str(p.relative_to(src)) for p in found.library] == [
        "neurovid/__init__.py",
        "neurovid/a.py",
        "neurovid/b.py",
        "neurovid/errors.py",
        "neurovid/pkg/__init__.py",
        "neurovid/pkg/c.py",
    ]
    assert found.third_party == {"numpy", "torch", "yaml"}
    assert imports_of(src / "neurovid/pkg/__init__.py", src) == {
        "neurovid.pkg.c",
        "neurovid.pkg.c.run",
    }


def test_the_code_digest_changes_with_the_contents_the_script_reaches(tmp_path: Path) -> None:
    def digest(name: str, change=None) -> str:  # type: ignore[no-untyped-def]
        root = library_tree(tmp_path / name)  # a fresh copy per case (results are cached)
        if change:
            change(root / "src/neurovid")
        return code_digest(root / "scripts/step.py", root / "src")

    def append(module: str):  # type: ignore[no-untyped-def]
        return lambda lib: (lib / module).write_text((lib / module).read_text() + "# edited\n")

    def touch(lib: Path) -> None:
        os.utime(lib / "b.py", (1, 1))

    reference = digest("copy")
    assert reference.startswith("sha256:") and digest("another-copy") == reference
    assert digest("touched", touch) == reference  # same bytes: nothing to re-run
    assert digest("unused-edited", append("unused.py")) == reference
    assert digest("typed-edited", append("typed.py")) == reference
    assert digest("b-edited", append("b.py")) != reference  # reached through a relative import
    assert digest("c-edited", append("pkg/c.py")) != reference


def test_every_rule_script_reaches_the_library_it_runs() -> None:
    # The modules the hand-written lists missed (encode: ridge.py; deep, retina and
    # behavior rules: the device and model-loading helpers, now neurovid/models.py, and
    # features/qwen2vl.py) are reached by the walk.
    library = {
        rule: {str(p.relative_to(SRC)) for p in script_imports(block["script"], SRC).library}
        for rule, block in RULES.items()
        if "script" in block
    }
    assert (
        "neurovid/ridge.py" in library["encode"]
        and "neurovid/ridge.py" in library["encode_trained"]
    )
    for rule in ("train_retina", "train_sensorium", "behavior_frames", "train_frame_classifier"):
        assert "neurovid/models.py" in library[rule], rule
    for rule in ("behavior_frames", "train_frame_classifier"):  # frame streaming
        assert "neurovid/features/runtime.py" in library[rule], rule
    # the deep encoders no longer reach the feature extractors' module
    for rule in ("train_retina", "train_sensorium", "encode_trained"):
        assert "neurovid/features/runtime.py" not in library[rule], rule
    for rule in ("actions", "train_actions"):
        assert "neurovid/features/qwen2vl.py" in library[rule], rule
    assert all("neurovid/io.py" in files for files in library.values())

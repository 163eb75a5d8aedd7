"""The declared dependency ranges are the tested ones: floors = .ci/oldest.txt, the lock inside the ranges, the
README's install = what CI runs, the model card's transformers range = the ends CI tests."""

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from hansard_hf.modeling_hansard_gpt import TESTED_TRANSFORMERS

ROOT = Path(__file__).resolve().parents[1]


def declared() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["dev"]
    return {canonicalize_name(r.name): r for r in map(Requirement, requirements)}


def pins(file: str) -> dict[str, str]:
    lines = (ROOT / file).read_text().splitlines()
    return {canonicalize_name(name): version for name, version in
            (line.split("==") for line in lines if line and not line.startswith("#"))}


def floor(requirement: Requirement) -> str:
    return next(spec.version for spec in requirement.specifier if spec.operator == ">=")


def test_oldest_constraints_are_exactly_the_declared_floors():
    oldest = pins(".ci/oldest.txt")
    for name, requirement in declared().items():
        if name != "torch":  # one build of torch on the test machines: see pyproject.toml
            assert Version(oldest[name]) == Version(floor(requirement)), name
    assert set(oldest) == set(declared())


def test_the_lock_pins_every_dependency_inside_its_range():
    lock = pins("requirements-lock.txt")
    for name, requirement in declared().items():
        assert requirement.specifier.contains(lock[name]), (name, lock[name], str(requirement.specifier))
    assert lock["torch"] == "2.13.0"  # the PyPI version: a GPU machine gets its CUDA build, ours the local CPU one


def test_model_card_range_is_the_tested_ends():
    assert TESTED_TRANSFORMERS == (pins(".ci/oldest.txt")["transformers"], pins("requirements-lock.txt")["transformers"])


def test_ci_runs_the_readme_commands_as_written():
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Set up", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [re.sub(r"\s+#.*$", "", line).strip() for line in setup.splitlines()]
    install, test = commands[1].split("&&")[-1].strip(), commands[2]
    assert commands[0] == "python3 -m venv .venv && . .venv/bin/activate" and "fresh_venv .venv\n" in ci
    assert f"\n{install}\n{test}\n" in ci
    lock_command = readme.split("Reproducing a result", 1)[1].split("```bash\n", 1)[1].split("\n", 1)[0]
    assert lock_command.split("#")[0].strip() in ci


def test_the_package_has_no_import_cycle():
    """Every relative import among hansard_hf's modules, at module level or inside a function, points down a graph
    without cycles (ARCHITECTURE.md draws it)."""
    import ast

    package = ROOT / "hansard_hf"
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
               for p in package.rglob("*.py")}

    def imported(path: Path, name: str) -> set[str]:
        here = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = ".".join(here.split(".")[: len(here.split(".")) - node.level + 1] + [node.module or ""]).strip(".")
                names = [f"{base}.{alias.name}" for alias in node.names] + [base]
                found |= {n for n in names if n in modules and n != name and n != "hansard_hf"}
        return found

    graph = {name: imported(path, name) for name, path in modules.items()}
    done, path = set(), []

    def visit(name: str) -> None:
        assert name not in path, f"import cycle: {' -> '.join(path[path.index(name):] + [name])}"
        if name not in done:
            path.append(name)
            for target in sorted(graph[name]):
                visit(target)
            path.pop()
            done.add(name)

    for name in sorted(graph):
        visit(name)

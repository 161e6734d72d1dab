"""The shape of the package: every module imports alone, imports flow one way, and the
decoding half (bitstream, decoder, ``coolchic decode``) loads neither torch nor the trainer.

A cycle or a module that only imports after another one breaks in ways that depend on import
order (a worker process, a test run alone), so they are checked here rather than found there.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from coolchic.jobs.run import encode_file
from coolchic.jobs.settings import EncodeSettings
from tests.conftest import MakeYuv

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "coolchic"

#: Modules that need an optional extra, with the distribution that provides it.
OPTIONAL = {"coolchic.executors.dask_cluster": "distributed"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    """Every module of ``coolchic`` (``__main__`` excepted: importing it runs the CLI)."""
    found = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
    return {name: path for name, path in found.items() if not name.endswith(".__main__")}


def run_python(code: str, timeout: float = 300) -> str:
    """Run ``code`` in a fresh interpreter at the repository root; return its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# --------------------------------------------------------------------------------------------
# Each module imports alone


def test_every_module_imports_alone() -> None:
    """One interpreter; before each module every ``coolchic`` module is forgotten, so each is
    imported as if it came first (one interpreter per module would take minutes)."""
    names = [
        name
        for name in package_modules()
        if name not in OPTIONAL or importlib.util.find_spec(OPTIONAL[name]) is not None
    ]
    out = run_python(
        f"""
        import importlib, json, sys, traceback
        failures = {{}}
        for name in {names!r}:
            for loaded in [m for m in sys.modules if m == "coolchic" or m.startswith("coolchic.")]:
                del sys.modules[loaded]
            try:
                importlib.import_module(name)
            except BaseException:
                failures[name] = traceback.format_exc()
        print(json.dumps(failures))
        """
    )
    failures = json.loads(out.strip().splitlines()[-1])
    assert not failures, "\n".join(f"{name}:\n{tb}" for name, tb in failures.items())


# --------------------------------------------------------------------------------------------
# No import cycle


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(
    body: list[ast.stmt], *, type_checking: bool
) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: not those inside functions; those under
    ``if TYPE_CHECKING:`` only when ``type_checking``."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            if type_checking:
                yield from _module_level_imports(node.body, type_checking=type_checking)
            yield from _module_level_imports(node.orelse, type_checking=type_checking)
        elif isinstance(node, ast.If | ast.Try | ast.With | ast.ClassDef):
            for block in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, block, []):
                    inner = child.body if isinstance(child, ast.ExceptHandler) else [child]
                    yield from _module_level_imports(inner, type_checking=type_checking)


def _targets(
    node: ast.Import | ast.ImportFrom, importer: str, is_package: bool, modules: set[str]
) -> set[str]:
    """The modules an import statement runs or reads from (inside or outside ``coolchic``).

    ``from package import submodule`` needs the submodule, not the names of the package's
    ``__init__``; ``from package import name`` needs the ``__init__`` to have run.
    """
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    base = node.module or ""
    if node.level:
        package = importer if is_package else importer.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    return {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}


def import_graph(*, type_checking: bool) -> dict[str, set[str]]:
    """Module → the ``coolchic`` modules its import runs, including the packages above a
    module imported from outside them (their ``__init__`` runs first)."""
    modules = package_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        is_package = path.name == "__init__.py"
        for node in _module_level_imports(tree.body, type_checking=type_checking):
            for target in _targets(node, name, is_package, set(modules)):
                if target not in modules:
                    continue
                graph[name].add(target)
                parts = target.split(".")
                for depth in range(2, len(parts)):  # the root package is everyone's parent
                    ancestor = ".".join(parts[:depth])
                    inside = name.startswith(ancestor + ".")
                    if ancestor in modules and not inside:
                        graph[name].add(ancestor)
        graph[name].discard(name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for successor in sorted(graph[node]):
            if state.get(successor) == 1:
                return [*path[path.index(successor) :], successor]
            if successor not in state and (cycle := visit(successor)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_import_graph_sees_the_known_edges() -> None:
    """The graph is built from the real files: a few edges it must hold."""
    graph = import_graph(type_checking=True)
    assert "coolchic.jobs.types" in graph["coolchic.executors.base"]  # under TYPE_CHECKING
    assert "coolchic.jobs" in graph["coolchic.executors.local"]  # the package's __init__
    assert "coolchic.jobs.types" in graph["coolchic.jobs"]
    assert "coolchic.jobs" not in graph["coolchic.jobs.run"]  # its own package is running
    assert "coolchic.jobs.run" in graph["coolchic.batch"]
    assert "coolchic.executors.base" not in import_graph(type_checking=False)["coolchic.batch"]


@pytest.mark.parametrize("type_checking", [False, True], ids=["runtime", "with-type-checking"])
def test_no_import_cycle(type_checking: bool) -> None:
    cycle = find_cycle(import_graph(type_checking=type_checking))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_nothing_below_the_cli_imports_the_batch_runner() -> None:
    """``coolchic.batch`` drives executors; only the CLI and the daemon sit above it."""
    graph = import_graph(type_checking=True)
    importers = {name for name, targets in graph.items() if "coolchic.batch" in targets}
    assert all(name.startswith(("coolchic.cli", "coolchic.daemon")) for name in importers)


# --------------------------------------------------------------------------------------------
# The decoding half is torch-free and trainer-free


def loaded_after(code: str) -> list[str]:
    """The torch and ``coolchic.train`` modules loaded in a fresh interpreter by ``code``."""
    out = run_python(
        textwrap.dedent(code)
        + textwrap.dedent(
            """
            import json, sys
            print(json.dumps(sorted(
                m for m in sys.modules
                if m == "torch" or m.startswith(("torch.", "coolchic.train"))
            )))
            """
        )
    )
    return json.loads(out.strip().splitlines()[-1])


def test_bitstream_and_decoder_load_neither_torch_nor_the_trainer() -> None:
    loaded = loaded_after(
        """
        import importlib, pkgutil
        import coolchic.bitstream, coolchic.decoder
        for package in (coolchic.bitstream, coolchic.decoder):
            for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
                importlib.import_module(info.name)
        """
    )
    assert loaded == []


def test_coolchic_decode_loads_no_trainer(tmp_path: Path, make_yuv: MakeYuv) -> None:
    """``coolchic decode`` of a real stream, in a fresh interpreter, never imports the trainer."""
    source = make_yuv()
    stream = tmp_path / "clip.cool"
    encode_file(source, stream, EncodeSettings(recipe="instant", threads=1, device="cpu"))
    output = tmp_path / "decoded_16x8_01p_yuv420_8b.yuv"
    loaded = loaded_after(
        f"""
        from coolchic.cli import main
        code = main(["decode", {str(stream)!r}, "-o", {str(output)!r}])
        assert code == 0, code
        """
    )
    assert output.stat().st_size == source.stat().st_size
    assert not [name for name in loaded if name.startswith("coolchic.train")], loaded

"""The house rules of issue #19, checked on the code's own imports (ast; nothing is imported or run).

- no import cycles between phoenix_data's modules (lazy imports inside functions count too);
- ``mediapipe`` is imported only inside ``phoenix_data/extract/mediapipe/``;
- nothing outside ``phoenix_data/cli/`` imports ``phoenix_data.cli``;
- MediaPipe settings are constructed only at the top (the commands, the Dataset's default);
- modules stay under 400 lines;
- a Ray actor's module and the Ray driver import no torch (checked by importing them in a fresh
  Python: the one test here that runs anything).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

from helpers import REPO_ROOT

PACKAGE = REPO_ROOT / "phoenix_data"
MAX_MODULE_LINES = 400
# where HolisticSettings may be constructed: the commands' flags, the Dataset's default, its own package
SETTINGS_CHOSEN_IN = ("phoenix_data.cli.", "phoenix_data.dataset", "phoenix_data.extract.mediapipe.")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> Dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_lines(tree: ast.Module) -> Set[int]:
    """Line numbers inside ``if TYPE_CHECKING:`` blocks (imports for annotations only)."""
    lines: Set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports(name: str, path: Path) -> Iterator[Tuple[str, int]]:
    """(absolute module imported, line) for every import in ``path``, lazy ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_lines(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if getattr(node, "lineno", 0) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, node.lineno
            for alias in node.names:  # `from . import tflite_edit`: a module, not a name
                yield f"{target}.{alias.name}", node.lineno


def internal_graph() -> Dict[str, Set[str]]:
    known = modules()
    graph: Dict[str, Set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for target, _ in imports(name, path):
            # a module's own ancestor packages are initialised before it runs: no edge to them
            if target in known and target != name and not name.startswith(target + "."):
                graph[name].add(target)
    return graph


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    found: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for succ in graph[node]:
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_checker_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    graph = internal_graph()
    assert graph["phoenix_data.cache.store"], "the graph must see imports (relative ones included)"
    assert cycles(graph) == []


def test_mediapipe_is_imported_only_in_its_package():
    outside = [f"{name}:{line}" for name, path in modules().items()
               if not name.startswith("phoenix_data.extract.mediapipe")
               for target, line in imports(name, path) if target.split(".")[0] == "mediapipe"]
    assert outside == []
    inside = [name for name, path in modules().items() if name.startswith("phoenix_data.extract.mediapipe")
              for target, _ in imports(name, path) if target.split(".")[0] == "mediapipe"]
    assert inside, "the legacy and tasks backends import mediapipe: the check must see it"


def test_nothing_below_imports_the_command_lines():
    below = [f"{name}:{line}" for name, path in modules().items() if not name.startswith("phoenix_data.cli")
             for target, line in imports(name, path) if target.startswith("phoenix_data.cli")]
    assert below == []


def test_mediapipe_settings_are_chosen_at_the_top():
    constructed = []
    for name, path in modules().items():
        if name.startswith(SETTINGS_CHOSEN_IN):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "HolisticSettings":
                constructed.append(f"{name}:{node.lineno}")
    assert constructed == []


def test_modules_stay_small():
    long = {name: n for name, path in modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_a_ray_actor_and_its_driver_import_no_torch():
    """Each Ray actor is a fresh Python importing ``phoenix_data.warm.actor``: torch would cost it ~2 s
    and ~190 MB; the driver (the command with ``--ray``) needs none either. (``phoenix_data.warm``
    imports torch only when a local job runs: ``warm.run``.)"""
    probe = ("import sys; heavy = lambda: sorted(m for m in ('torch', 'cv2', 'mediapipe') if m in sys.modules); "
             "import phoenix_data.warm.actor; print(heavy()); "
             "import phoenix_data.cli.warm, phoenix_data.warm.ray; print(heavy()); "
             "import phoenix_data.warm.run; print(heavy())")  # the last line shows the probe sees torch
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=REPO_ROOT).stdout.splitlines()
    assert out == ["[]", "[]", "['torch']"]

"""The import graph is the architecture: infra's layers, bottom to top, each importing only layers below it (an import
inside a function counts: none may hide an upward one), and no cycle between packages. scripts/structure reads
the imports (ast) and draws the graph for docs/architecture.md."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys

from conftest import ROOT

# Bottom to top; a layer may import itself and any layer before it. ``cli`` holds the Pulumi entry infra/__main__.py.
LAYERS = ("project", "site", "plan", "render", "usage", "runner", "image", "orchestrate", "stack", "vm", "cli")


def _structure():
    loader = importlib.machinery.SourceFileLoader("structure", str(ROOT / "scripts" / "structure"))
    spec = importlib.util.spec_from_loader("structure", loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules["structure"] = module            # its dataclass looks its module up
    loader.exec_module(module)
    return module


structure = _structure()


def upward_imports(imports) -> list[str]:
    """Each import from a layer to one above it, as ``module:line (in a function) -> target``."""
    out = []
    for imp in imports:
        src, dst = structure.package(imp.module), structure.package(imp.target)
        if src in LAYERS and dst in LAYERS and LAYERS.index(dst) > LAYERS.index(src):
            where = " (in a function)" if imp.in_function else ""
            out.append(f"{imp.module}:{imp.line}{where} -> {imp.target} ({src} below {dst})")
    return out


def package_cycles(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    def reaches(a: str, b: str) -> bool:
        seen, todo = set(), [a]
        while todo:
            for n in edges.get(todo.pop(), ()):
                if n == b:
                    return True
                if n not in seen:
                    seen.add(n)
                    todo.append(n)
        return False
    return sorted({tuple(sorted((a, b))) for a, bs in edges.items() for b in bs if reaches(b, a)})


def test_every_package_of_infra_has_its_layer():
    packages = {structure.package(structure.module_name(p, ROOT)) for p in (ROOT / "infra").rglob("*.py")}
    assert packages - {None} <= set(LAYERS), f"give each package a place in LAYERS: {sorted(packages - {None} - set(LAYERS))}"


def test_no_layer_imports_a_layer_above_it():
    imports = list(structure.imports(ROOT))
    assert len(imports) > 200                    # the reader sees the tree's imports, those in functions among them
    assert any(i.in_function for i in imports)
    assert upward_imports(imports) == []


def test_no_two_packages_import_each_other():
    edges = structure.package_graph(ROOT)
    assert {"cli", "vm", "plan", "site"} <= set(edges)
    assert package_cycles(edges) == []


def test_an_upward_import_and_a_cycle_are_found():
    """The checks themselves: a render importing the orchestration, inside a function, is named, and is a cycle."""
    found = [structure.Import("infra.render.files", "infra.orchestrate.up", 7, True)]
    assert upward_imports(found) == ["infra.render.files:7 (in a function) -> infra.orchestrate.up (render below orchestrate)"]
    assert package_cycles({"render": {"orchestrate"}, "orchestrate": {"render"}, "site": set()}) == [("orchestrate", "render")]


# What the pure layers may not read: the environment they run in (installed versions, the process's variables).
# A render depends on the plan alone; what the controller is (its Ansible's versions) is the apply layer's to add.
ENVIRONMENT_READERS = ("importlib.metadata", "importlib_metadata", "pkg_resources", "os.environ", "os.getenv")


def environment_reads(text: str, name: str) -> list[str]:
    import ast
    out = []
    for node in ast.walk(ast.parse(text, name)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            names = [f"{node.value.id}.{node.attr}"]
        else:
            continue
        out += [f"{name}:{node.lineno} {n}" for n in names if n in ENVIRONMENT_READERS]
    return out


def test_site_plan_and_render_read_nothing_of_the_environment():
    pure = [p for layer in ("site", "plan", "render") for p in sorted((ROOT / "infra" / layer).rglob("*.py"))]
    assert len(pure) > 20
    assert [r for p in pure for r in environment_reads(p.read_text(), str(p.relative_to(ROOT)))] == []


def test_an_environment_read_is_found():
    sample = "from importlib.metadata import version\nimport os\nX = os.environ.get('A')\n"
    assert environment_reads(sample, "x.py") == ["x.py:1 importlib.metadata", "x.py:3 os.environ"]

"""The package's imports point one way: domain ← store ← stages ← services ← web ← wiring.

Read from the source with `ast` (every import, also those inside functions), so a backwards
arrow fails here before it turns into an import cycle or a stage that drags in the web layer.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "receiver"

# The first dotted part under `receiver` → its layer; a module may import its own layer and
# those below it. A new top-level module or package must be placed here.
LAYERS: dict[str, int] = {
    # 0: domain and shared plumbing with no stage behind it
    "__init__": 0,
    "domain": 0,
    "records": 0,
    "glossary": 0,
    "settings": 0,
    "durations": 0,
    "safety": 0,
    "timeutil": 0,
    "ports": 0,
    "retry": 0,
    "work": 0,
    "telemetry": 0,
    "ratelimit": 0,
    "logs": 0,
    # 1: the store, the only place that knows the database
    "store": 1,
    # 2: the stages of the pipeline and the jobs beside it
    "ingest": 2,
    "detect": 2,
    "enrich": 2,
    "notify": 2,
    "chat": 2,
    "rulegen": 2,
    "retention": 2,
    "oncall": 2,
    # 3: the container of built stage objects that the web layer reads
    "services": 3,
    # 4: the web layer
    "api": 4,
    "ui": 4,
    # 5: composition roots and programs
    "app": 5,
    "run": 5,
    "cli": 5,
    "demo": 5,
}
NAMES = ["domain", "store", "stages", "services", "web", "wiring"]


@dataclass(frozen=True)
class Edge:
    source: str  # path relative to the repository
    line: int
    importer: str  # top-level part of the importing module
    imported: str  # top-level part of the imported module
    target: str  # the full dotted name imported

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.importer} imports {self.target}"


def _top(path: Path) -> str:
    return path.relative_to(ROOT).parts[0].removesuffix(".py")


def _imported_top(node: ast.ImportFrom | ast.Import) -> list[tuple[str, str]]:
    """(top-level part, dotted name) of every `receiver` module this statement imports."""
    found: list[tuple[str, str]] = []
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif node.level == 0 and node.module is not None:
        if node.module == "receiver":
            # `from receiver import x`: x is a submodule or an attribute of the package
            names = [f"receiver.{alias.name}" for alias in node.names]
        else:
            names = [node.module]
    else:
        names = []
    for name in names:
        parts = name.split(".")
        if parts[0] != "receiver":
            continue
        top = parts[1] if len(parts) > 1 else "__init__"
        is_module = (ROOT / top).is_dir() or (ROOT / f"{top}.py").is_file()
        found.append((top if is_module else "__init__", name))
    return found


def edges() -> list[Edge]:
    out: list[Edge] = []
    for path in sorted(ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for top, name in _imported_top(node):
                    source = str(path.relative_to(ROOT.parent))
                    out.append(Edge(source, node.lineno, _top(path), top, name))
    return out


def test_every_module_has_a_layer() -> None:
    """A new top-level module or package is placed in LAYERS before it can be imported."""
    tops = {_top(p) for p in ROOT.rglob("*.py")}
    assert sorted(tops - LAYERS.keys()) == []


def test_imports_never_point_up() -> None:
    """No module imports a layer above its own (e.g. the store a stage, a stage the web)."""
    bad = [
        f"{e} ({NAMES[LAYERS[e.importer]]} → {NAMES[LAYERS[e.imported]]})"
        for e in edges()
        if e.importer in LAYERS and e.imported in LAYERS and LAYERS[e.imported] > LAYERS[e.importer]
    ]
    assert bad == []


def test_stages_do_not_import_the_web_layer() -> None:
    """ingest, detect, enrich, notify, chat, rulegen and retention never import api or ui."""
    stages = {name for name, layer in LAYERS.items() if layer == LAYERS["ingest"]}
    bad = [str(e) for e in edges() if e.importer in stages and e.imported in {"api", "ui"}]
    assert bad == []


def test_store_does_not_import_stages() -> None:
    """receiver/store knows the database, not the stages that use it."""
    bad = [str(e) for e in edges() if e.importer == "store" and LAYERS.get(e.imported, 0) >= 2]
    assert bad == []


def test_settings_do_not_import_rulegen() -> None:
    """Reading the configuration pulls in nothing but the bottom layer (no rulegen)."""
    bad = [str(e) for e in edges() if e.source == "receiver/settings.py" and LAYERS[e.imported]]
    assert bad == []


def test_api_does_not_import_ui() -> None:
    """Within the web layer the arrow is one way: the console may use the API's helpers."""
    bad = [str(e) for e in edges() if e.importer == "api" and e.imported == "ui"]
    assert bad == []


def test_the_checker_sees_a_backwards_import() -> None:
    """The import reader finds imports inside functions and `from receiver import x` forms."""
    source = "def f():\n    from receiver.api.errors import error\n"
    tree = ast.parse(source + "from receiver import ui, __version__\n")
    found = [
        t
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for t in _imported_top(node)
    ]
    assert sorted(found) == [
        ("__init__", "receiver.__version__"),
        ("api", "receiver.api.errors"),
        ("ui", "receiver.ui"),
    ]


# --- the store is the only place that knows Mongo ---------------------------------------------

DATABASE_MODULES = ("beanie", "pymongo", "bson", "receiver.store.documents")


def _database_imports(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if any(name == m or name.startswith(f"{m}.") for m in DATABASE_MODULES):
                found.append((node.lineno, name))
                break
    return found


def test_only_the_store_imports_the_database() -> None:
    """Outside receiver/store no module imports beanie, pymongo, bson or the documents."""
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        source = str(path.relative_to(ROOT.parent))
        if _top(path) == "store":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        bad += [f"{source}:{line}: imports {name}" for line, name in _database_imports(tree)]
    assert bad == []


def test_the_database_rule_sees_every_import_form() -> None:
    """`import pymongo`, `from bson import ObjectId`, `from receiver.store import documents`."""
    source = (
        "import pymongo.errors\nfrom bson import ObjectId\n"
        "def f():\n    from receiver.store import documents\n"
        "from receiver.store.repo import Store\n"
    )
    found = [name for _, name in _database_imports(ast.parse(source))]
    assert found == ["pymongo.errors", "bson", "receiver.store.documents"]


# --- query operators are spelled only in the store --------------------------------------------

# `$` strings outside the store that are no query operator: a JSON Schema reference, a
# Prometheus template variable, PromQL's escape of `$` in a replacement
NOT_OPERATORS = frozenset(
    {
        ("receiver/api/openapi.py", "$defs"),
        ("receiver/rulegen/templates.py", "$value"),
        ("receiver/detect/promql.py", "$"),
        ("receiver/detect/promql.py", "$$"),
    }
)


def _dollar_strings(tree: ast.AST) -> list[tuple[int, str]]:
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.startswith("$")
    ]


def test_only_the_store_spells_query_operators() -> None:
    """No string constant starting with `$` (`$gte`, `$in`, `$set`) outside receiver/store."""
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        source = str(path.relative_to(ROOT.parent))
        if _top(path) == "store":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        bad += [
            f"{source}:{line}: {value!r}"
            for line, value in _dollar_strings(tree)
            if (source, value) not in NOT_OPERATORS
        ]
    assert bad == []


def test_the_operator_rule_sees_keys_and_values() -> None:
    """Dict keys and nested values are both string constants the scan finds."""
    tree = ast.parse('q = {"at": {"$gte": t}, "$or": [x]}\nf(op="$in")\n')
    assert sorted(v for _, v in _dollar_strings(tree)) == ["$gte", "$in", "$or"]

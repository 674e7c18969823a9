"""The import direction of docs/ARCHITECTURE.md, checked on the source (AST, nothing is run).

Every module belongs to a unit (`playstream.records`, `playstream.games`, ...); units sit in
layers, and a unit may import only units of lower layers. Kafka clients are imported only by
the Kafka edges, and the CLI imports an edge only inside the command that needs it, so the
bare install (no extras) runs every embedded command. Module import cycles fail too.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Where each top-level source folder is installed (pyproject.toml's package-dir).
SOURCE_FOLDERS = {"playstream": "playstream", "producers": "playstream.producers",
                  "streams": "playstream.streams", "consumers": "playstream.consumers",
                  "cli": "playstream.cli", "clients": "playstream.clients",
                  "plugins": "playstream.plugins"}

# Lowest layer first; a unit imports only units of earlier layers (or itself).
LAYERS: list[set[str]] = [
    {"playstream", "playstream.errors", "playstream.durable", "playstream.logs", "playstream.locks",
     "playstream.digests", "playstream.metrics"},
    {"playstream.rejects"},
    {"playstream.storage"},
    {"playstream.games"},
    {"playstream.records"},
    {"playstream.topics"},
    {"playstream.dataset"},
    {"playstream.encoders"},
    {"playstream.chunks"},
    {"playstream.gamefiles"},
    {"playstream.incremental"},
    {"playstream.selfplay"},
    {"playstream.compaction"},
    {"playstream.quality"},
    {"playstream.report"},
    {"playstream.training"},
    # edges: they depend on the core, never the reverse
    {"playstream.plugins"},  # game plugins (OpenSpiel): found through entry points only
    {"playstream.clients"},
    {"playstream.localkafka"},
    {"playstream.prometheus"},
    {"playstream.producers"},
    {"playstream.streams"},
    {"playstream.consumers"},
    # the torch Dataset: a consumer of the training stream, the only importer of torch
    {"playstream.training.torch"},
    # the command line on top
    {"playstream.cli"},
    {"playstream.__main__"},
]
KAFKA_EDGES = {"playstream.clients", "playstream.producers", "playstream.streams",
               "playstream.consumers"}
EDGES = KAFKA_EDGES | {"playstream.localkafka", "playstream.prometheus"}
KAFKA_CLIENTS = {"kafka", "aiokafka", "faust", "mode"}
# The object-store client is imported by the S3 backend of the storage port alone.
OBJECT_STORE_CLIENTS = {"boto3", "botocore"}
OBJECT_STORE_BACKENDS = {"playstream.storage.s3"}
# The plotting library is imported by the report's renderer alone (the `report` extra).
PLOTTING_CLIENTS = {"matplotlib"}
PLOTTING_MODULES = {"playstream.report.render"}
ENGINE_CLIENTS = {"pyspiel", "open_spiel"}  # only the plugin that wraps them imports them
# Units that are a layer of their own inside a package (the rest of the package is another).
SUBUNITS = {"playstream.training.torch"}
TORCH_UNIT = "playstream.training.torch"


@dataclass(frozen=True)
class Import:
    importer: str      # module name
    target: str        # module name (or third-party top-level name)
    line: int
    top_level: bool    # runs on import (not inside a function or a TYPE_CHECKING block)


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    parts[0] = SOURCE_FOLDERS[parts[0]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def discover() -> dict[str, str]:
    """module name → source text of every module of the package."""
    sources: dict[str, str] = {}
    for folder in SOURCE_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            sources[module_name(path)] = path.read_text()
    return sources


def imports_of(name: str, source: str, known: set[str], is_package: bool) -> list[Import]:
    found: list[Import] = []
    tree = ast.parse(source)
    # Imports that do not run when the module is imported: inside a function, or under
    # ``if TYPE_CHECKING:``.
    deferred = {id(n) for f in ast.walk(tree)
                if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                or (isinstance(f, ast.If) and "TYPE_CHECKING" in ast.unparse(f.test))
                for n in ast.walk(f)}
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base]
            targets += [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
        for target in targets:
            found.append(Import(name, target, node.lineno, id(node) not in deferred))
    return found


def unit_of(module: str) -> str:
    for sub in SUBUNITS:
        if module == sub or module.startswith(sub + "."):
            return sub
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "playstream" else parts[0]


def layer_of(unit: str) -> int:
    for index, units in enumerate(LAYERS):
        if unit in units:
            return index
    raise AssertionError(f"{unit} is in no layer: add it to LAYERS and docs/ARCHITECTURE.md")


def violations(sources: dict[str, str]) -> list[str]:
    known = set(sources)
    packages = {m for m in known if any(other.startswith(m + ".") for other in known)}
    found: list[str] = []
    graph: dict[str, set[str]] = {m: set() for m in known}
    for module, source in sources.items():
        importer_unit = unit_of(module)
        for imp in imports_of(module, source, known, module in packages):
            where = f"{module}:{imp.line} imports {imp.target}"
            if imp.target.split(".")[0] in KAFKA_CLIENTS and importer_unit not in KAFKA_EDGES:
                found.append(f"{where}: Kafka clients belong in {sorted(KAFKA_EDGES)}")
            if (imp.target.split(".")[0] in OBJECT_STORE_CLIENTS
                    and module not in OBJECT_STORE_BACKENDS):
                found.append(f"{where}: object-store clients belong in "
                             f"{sorted(OBJECT_STORE_BACKENDS)}")
            if (imp.target.split(".")[0] in PLOTTING_CLIENTS
                    and module not in PLOTTING_MODULES):
                found.append(f"{where}: matplotlib belongs in {sorted(PLOTTING_MODULES)}")
            if imp.target.split(".")[0] in ENGINE_CLIENTS and importer_unit != "playstream.plugins":
                found.append(f"{where}: game engines belong in playstream.plugins")
            if importer_unit != "playstream.plugins" and imp.target.startswith(
                    "playstream.plugins") and not module.startswith("playstream.plugins"):
                found.append(f"{where}: plugins are loaded through entry points only")
            if imp.target.split(".")[0] == "torch" and importer_unit != TORCH_UNIT:
                found.append(f"{where}: torch belongs in {TORCH_UNIT} (the torch extra)")
            if imp.target not in known:
                continue
            graph[module].add(imp.target)
            if imp.target in PLOTTING_MODULES and imp.top_level and module.startswith(
                    "playstream.cli"):
                found.append(f"{where}: the CLI imports the renderer only inside its command")
            target_unit = unit_of(imp.target)
            if target_unit == importer_unit:
                continue
            if layer_of(target_unit) >= layer_of(importer_unit):
                found.append(f"{where}: against the layer direction "
                             f"({importer_unit} must not depend on {target_unit})")
            if importer_unit == "playstream.cli" and target_unit in EDGES and imp.top_level:
                found.append(f"{where}: the CLI imports an edge only inside its command")
    found += [f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(graph)]
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                result.append(sorted(component) + [sorted(component)[0]])

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return result


def test_every_module_is_in_a_layer() -> None:
    for module in discover():
        layer_of(unit_of(module))


def test_imports_follow_the_declared_direction() -> None:
    assert violations(discover()) == []


def test_the_training_package_imports_without_torch() -> None:
    """The numpy iterator works on the bare install: importing playstream.training (and
    using it) must not import torch; only the PlaystreamDataset attribute loads it."""
    code = ("import sys; import playstream.training as t; assert 'torch' not in sys.modules; "
            "t.PlaystreamDataset; assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_the_architecture_document_lists_every_unit() -> None:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    missing = [u for units in LAYERS for u in units
               if u not in ("playstream", "playstream.__main__") and f"`{u}`" not in text]
    assert missing == []


# The checker itself, on the cycles and wrong-way imports the tree used to have.
@pytest.mark.parametrize("sources, expected", [
    ({"playstream.games": "from playstream.selfplay.agents import Agent\n",
      "playstream.selfplay.agents": "from playstream.encoders.values import v\n",
      "playstream.encoders.values": "from playstream.games import Game\n"},
     ["against the layer direction (playstream.games must not depend on playstream.selfplay)",
      "import cycle"]),
    ({"playstream.gamefiles.source": "def f():\n    from playstream.gamefiles.jsonl import x\n",
      "playstream.gamefiles.jsonl": "from playstream.gamefiles.source import SourceItem\n"},
     ["import cycle: playstream.gamefiles.jsonl -> playstream.gamefiles.source"]),
    ({"playstream.cli.finalize": "from playstream.consumers.service import S\n",
      "playstream.consumers.service": "import kafka\n"},
     ["the CLI imports an edge only inside its command"]),
    ({"playstream.records": "import faust\n"}, ["Kafka clients belong in"]),
    ({"playstream.chunks.store": "import boto3\n"}, ["object-store clients belong in"]),
    ({"playstream.report.stats": "import matplotlib.pyplot\n"}, ["matplotlib belongs in"]),
    ({"playstream.cli.report": "from playstream.report.render import page\n",
      "playstream.report.render": "import matplotlib\n"},
     ["the CLI imports the renderer only inside its command"]),
    ({"playstream.training.loader": "import torch\n"}, ["torch belongs in"]),
    ({"playstream.training.loader": "from playstream.training.torch import D\n",
      "playstream.training.torch": "import torch\nfrom playstream.training.loader import S\n"},
     ["against the layer direction (playstream.training must not depend on "
      "playstream.training.torch)", "import cycle"]),
    ({"playstream.cli.stream": "def run():\n    from playstream.streams.app import a\n",
      "playstream.streams.app": "import faust\nfrom playstream.records import r\n",
      "playstream.records": "import json\n"}, []),
])
def test_the_checker_finds_what_it_should(sources: dict[str, str], expected: list[str]) -> None:
    found = violations(sources)
    assert len(found) == len(expected), found
    for fragment in expected:
        assert any(fragment in message for message in found), (fragment, found)

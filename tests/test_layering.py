"""The package's import layers: a module imports only modules of lower layers, lazily or not, so there is no
import cycle and a low module never depends on a driver. A new module must be given its place here.

Also the facts that must have one home: the model names, the weights names, the default batch size.
"""
from __future__ import annotations

import ast
from pathlib import Path

import photocluster

PACKAGE = Path(photocluster.__file__).parent

# Bottom first. A module may import only from the layers below its own.
LAYERS = [
    {"errors", "wording", "fsutil", "logs", "interrupts", "labels", "notify", "library", "cache_guard", "jpeg_scans",
     "verify", "link_naming"},
    {"images", "weights", "outdir", "detection_columns", "producer_columns", "object_index", "gallery_map",
     "scan_state"},
    {"settings", "networks", "capture", "cache", "openvino_ir", "thumbs", "layout_reuse"},
    {"models", "detector", "scene_formats", "cache_view", "tree_edits"},
    {"lastrun", "fingerprint", "layout", "patterns", "cluster", "scene_store", "constraints"},
    {"checkpoint", "clustering", "scenes", "moves", "inprocess", "object_embed", "corrections", "cli_options"},
    {"gallery_facts", "dask_fingerprinter"},
    {"gallery_html"},
    {"gallery"},
    {"run_report"},
    {"config", "pipeline", "similar"},
    {"worker", "watching"},
    {"watched", "worker_fingerprinter"},
    {"daemon_status", "daemon_reload", "summary", "search_cli", "corrections_cli", "daemon_tree"},
    {"daemon"},
    {"cli", "__init__"},
    {"__main__"},
]
# Imports that break the layers today, each with who removes it. Keep this empty.
KNOWN: set[tuple[str, str]] = set()


def module_of(path: Path) -> str:
    """'cluster' for every file of the cluster package, else the file's own name."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0] if len(parts) > 1 or parts[0] != "__init__" else "__init__"


def imported_modules(source: str, in_subpackage: bool = False) -> set[str]:
    """The photocluster modules `source` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("photocluster.")}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").startswith("photocluster"):
                rest = node.module.split(".")[1:]
                found |= {rest[0]} if rest else {a.name for a in node.names}
            elif node.level == (2 if in_subpackage else 1):  # relative to the photocluster package
                found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
    return found - {"__version__"}


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        module = module_of(path)
        graph.setdefault(module, set()).update(imported_modules(path.read_text(), path.parent != PACKAGE) - {module})
    return graph


def test_every_module_has_a_layer():
    placed = set().union(*LAYERS)
    assert set(import_graph()) - placed == set(), "give each new module its layer in LAYERS"


def test_no_module_imports_one_of_its_own_or_a_higher_layer():
    layer = {module: i for i, members in enumerate(LAYERS) for module in members}
    upward = sorted((module, target) for module, targets in import_graph().items() for target in targets
                    if target in layer and layer[target] >= layer[module] and (module, target) not in KNOWN)
    assert upward == []


def test_the_checker_sees_every_form_of_import():
    source = ("import os\nimport photocluster.cache\nfrom photocluster import models as m\n"
              "from photocluster.layout import x\nfrom . import wording\nfrom .. import y\n"
              "def f():\n    from .cli import main\n")
    assert imported_modules(source) == {"cache", "models", "layout", "wording", "cli"}
    assert imported_modules("from . import dense\nfrom ..settings import z\n", in_subpackage=True) == {"settings"}


def test_model_weights_and_batch_facts_have_one_home():
    from photocluster import cli, config, fingerprint, models, settings

    assert set(models._ARCHITECTURES) == set(settings.MODEL_NAMES) == set(models.CALIBRATION)
    assert models.MODEL_NAMES is settings.MODEL_NAMES and models.RANDOM_WEIGHTS is settings.RANDOM_WEIGHTS
    assert config.NAMED_WEIGHTS is settings.NAMED_WEIGHTS
    assert fingerprint.DEFAULT_BATCH_SIZE is settings.DEFAULT_BATCH_SIZE
    assert settings.LibrarySettings(Path(".")).batch_size == settings.DEFAULT_BATCH_SIZE
    for parser in (cli.build_run_parser(), cli.build_watch_parser()):
        batch = next(a for a in parser._actions if a.dest == "batch_size")
        model = next(a for a in parser._actions if a.dest == "model")
        assert batch.default == settings.DEFAULT_BATCH_SIZE and tuple(model.choices) == settings.MODEL_NAMES

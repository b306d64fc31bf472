"""The import rule (STYLE.md): data, tokenization and models never import objectives, tasks, training or analysis;
nothing imports analysis; training sees objectives only through the package (registry, Protocol), never a specific
objective module. Imports are read with `ast`, including those inside functions and `if TYPE_CHECKING:` blocks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[2] / "src"
PACKAGE = SRC / "plmkit"

LEAF_LAYERS = ("plmkit.data", "plmkit.tokenization", "plmkit.models")
UPPER_LAYERS = ("plmkit.objectives", "plmkit.tasks", "plmkit.training", "plmkit.analysis")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module an import statement anywhere in `source` may load. `from a import b` counts as both `a` and
    `a.b` (b may be a submodule); relative imports are resolved against `module`."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _scan() -> dict[str, set[str]]:
    return {_module_name(path): imported_modules(path.read_text(encoding="utf-8"), _module_name(path),
                                                 path.name == "__init__.py")
            for path in sorted(PACKAGE.rglob("*.py"))}


IMPORTS = _scan()


def test_scanned_the_whole_package():
    assert len(IMPORTS) > 15
    assert {"plmkit.config", "plmkit.models.transformer", "plmkit.objectives.mlm", "plmkit.training.loop",
            "plmkit.tokenization.train", "plmkit.data.pack"} <= set(IMPORTS)


def test_leaf_layers_never_import_upper_layers():
    bad = [f"{module} imports {name}" for module, names in IMPORTS.items()
           if any(_within(module, leaf) for leaf in LEAF_LAYERS)
           for name in sorted(names) if any(_within(name, upper) for upper in UPPER_LAYERS)]
    assert not bad


def test_nothing_imports_analysis():
    bad = [f"{module} imports {name}" for module, names in IMPORTS.items() if not _within(module, "plmkit.analysis")
           for name in sorted(names) if _within(name, "plmkit.analysis")]
    assert not bad


def test_training_does_not_import_specific_objectives():
    specific = [m for m in IMPORTS if _within(m, "plmkit.objectives") and m not in ("plmkit.objectives",
                                                                                      "plmkit.objectives.base")]
    assert {"plmkit.objectives.mlm", "plmkit.objectives.clm"} <= set(specific)
    bad = [f"{module} imports {name}" for module, names in IMPORTS.items() if _within(module, "plmkit.training")
           for name in sorted(names) if name in specific]
    assert not bad
    assert any("plmkit.objectives" in names for m, names in IMPORTS.items() if _within(m, "plmkit.training"))


# --- the checker itself catches what it must ----------------------------------------------------------------------


@pytest.mark.parametrize(("source", "expected"), [
    ("import plmkit.objectives.mlm", "plmkit.objectives.mlm"),
    ("from plmkit import objectives", "plmkit.objectives"),
    ("from plmkit.objectives import mlm as m", "plmkit.objectives.mlm"),
    ("def f():\n    from plmkit.training import fit\n", "plmkit.training"),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import plmkit.analysis\n", "plmkit.analysis"),
    ("from ..objectives import clm", "plmkit.objectives.clm"),
    ("from .. import tasks", "plmkit.tasks"),
])
def test_checker_sees_every_import_form(source, expected):
    assert expected in imported_modules(source, "plmkit.models.transformer")


def test_checker_resolves_relative_imports_in_packages():
    assert "plmkit.models.transformer" in imported_modules("from .transformer import build_model", "plmkit.models",
                                                           is_package=True)
    assert "plmkit.objectives.base" in imported_modules("from . import base", "plmkit.objectives.mlm")

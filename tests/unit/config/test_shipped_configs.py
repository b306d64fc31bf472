"""Every shipped YAML (configs/ and the packaged quickstart) loads and validates; debug configs stay tiny."""

from __future__ import annotations

from pathlib import Path

import pytest

from plmkit.config import load_config, save_config, to_dict
from plmkit.embeddings import is_embeddings_config
from plmkit.models import ARCHS
from plmkit.objectives import objectives

ROOT = Path(__file__).parents[3]
# Run configs only: `plm embeddings train` configs (configs/embeddings/) have their own schema and are loaded in
# tests/unit/embeddings/test_word2vec_train.py.
SHIPPED = sorted(p for p in [*ROOT.glob("configs/**/*.yaml"), *ROOT.glob("configs/**/*.yml"),
                             *ROOT.glob("src/plmkit/resources/*.yaml")] if not is_embeddings_config(p))
DEBUG = sorted(ROOT.glob("configs/debug/*.yaml"))


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_found_the_shipped_configs():
    assert len(SHIPPED) >= 5, SHIPPED
    assert len(DEBUG) >= 2, DEBUG


@pytest.mark.parametrize("path", SHIPPED, ids=_id)
def test_shipped_config_loads_and_fits_together(path, tmp_path):
    cfg = load_config(path)
    kind = objectives.get(cfg.objective.name).factory.model_kind
    assert ARCHS[cfg.model.arch] == kind, f"{cfg.model.arch} cannot be trained with objective {cfg.objective.name}"
    positions = cfg.model.max_position_embeddings - (1 if cfg.model.arch == "roberta" else 0)
    assert cfg.data.block_size <= positions
    save_config(cfg, tmp_path / "config.yaml")  # the resolved config saved with a run loads back the same
    assert to_dict(load_config(tmp_path / "config.yaml")) == to_dict(cfg)


@pytest.mark.parametrize("path", DEBUG, ids=_id)
def test_debug_configs_are_tiny(path):
    cfg = load_config(path)
    assert cfg.train.max_steps <= 50
    assert cfg.model.hidden_size <= 64
    assert cfg.model.num_layers <= 2
    assert cfg.train.epochs is None  # epochs would override the step cap


def test_every_objective_has_a_debug_config():
    covered = {load_config(path).objective.name for path in DEBUG}
    assert set(objectives.names()) <= covered

"""load_config: defaults -> YAML -> --set precedence, init.from, interpolation, errors naming key and file,
save/load round trip and field docs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from plmkit.config import RunConfig, field_docs, load_config, save_config, to_dict
from plmkit.errors import ConfigError
from plmkit.objectives.clm import CLMConfig
from plmkit.objectives.mlm import MLMConfig


def _yaml(tmp_path, text: str, name: str = "run.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _error(path=None, overrides=None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    return str(info.value)


# --- loading and precedence -------------------------------------------------------------------------------------


def test_defaults_load_without_a_file():
    cfg = load_config()
    assert isinstance(cfg, RunConfig)
    assert cfg.train.lr == 5.0e-4 and cfg.train.max_steps == 1000 and cfg.model.arch == "bert"
    assert isinstance(cfg.objective, MLMConfig) and cfg.objective.name == "mlm"
    assert cfg.objective.mask_prob == 0.15
    assert cfg.init.from_ is None
    assert cfg.run.output_dir == "runs/plm-run"  # ${run.name} resolved


def test_yaml_overrides_defaults_and_set_overrides_yaml(tmp_path):
    path = _yaml(tmp_path, "train: {lr: 1.0e-3, max_steps: 50}\nmodel: {hidden_size: 64}\n")
    cfg = load_config(path)
    assert (cfg.train.lr, cfg.train.max_steps, cfg.model.hidden_size) == (1.0e-3, 50, 64)
    assert cfg.train.batch_size == 32  # untouched default survives the YAML layer

    cfg = load_config(path, ["train.lr=2e-3", "train.batch_size=4"])
    assert cfg.train.lr == 2e-3  # --set beats the YAML
    assert cfg.train.max_steps == 50  # YAML value kept where --set is silent
    assert cfg.train.batch_size == 4  # --set beats the default
    assert cfg.model.hidden_size == 64


def test_repeated_overrides_last_one_wins():
    cfg = load_config(None, ["train.max_steps=10", "train.max_steps=20", "train.lr=1e-3", "train.lr=3e-3"])
    assert cfg.train.max_steps == 20 and cfg.train.lr == 3e-3


def test_overrides_parse_yaml_values():
    cfg = load_config(None, ["data.paths=[a.txt,b.txt]", "data.dedup=false", "tokenizer.train.max_docs=null"])
    assert cfg.data.paths == ["a.txt", "b.txt"]
    assert cfg.data.dedup is False and cfg.tokenizer.train.max_docs is None


def test_objective_section_layers_and_switches(tmp_path):
    path = _yaml(tmp_path, "objective: {name: mlm, mask_prob: 0.3}\n")
    assert load_config(path).objective.mask_prob == 0.3
    cfg = load_config(path, ["objective.mask_prob=0.2"])
    assert isinstance(cfg.objective, MLMConfig) and cfg.objective.mask_prob == 0.2
    cfg = load_config(None, ["objective.name=clm"])
    assert isinstance(cfg.objective, CLMConfig) and cfg.objective.name == "clm"


def test_epochs_is_accepted():
    cfg = load_config(None, ["train.epochs=2"])
    assert cfg.train.epochs == 2.0
    assert "train.epochs" in _error(None, ["train.epochs=0"])


# --- init.from ----------------------------------------------------------------------------------------------------


def test_init_from_in_yaml_and_set(tmp_path):
    path = _yaml(tmp_path, "init: {from: runs/base/final}\n")
    assert load_config(path).init.from_ == "runs/base/final"
    assert load_config(None, ["init.from=bert-base-cased"]).init.from_ == "bert-base-cased"
    assert load_config(path, ["init.from=other/model"]).init.from_ == "other/model"  # --set beats YAML


def test_init_from_round_trips_through_save_and_load(tmp_path):
    cfg = load_config(None, ["init.from=runs/base/final"])
    save_config(cfg, tmp_path / "config.yaml")
    text = (tmp_path / "config.yaml").read_text(encoding="utf-8")
    assert re.search(r"^  from: runs/base/final$", text, re.MULTILINE), text
    assert "from_" not in text
    assert to_dict(cfg)["init"] == {"from": "runs/base/final"}
    assert load_config(tmp_path / "config.yaml").init.from_ == "runs/base/final"


# --- interpolation ------------------------------------------------------------------------------------------------


def test_run_name_interpolation_in_output_dir(tmp_path):
    assert load_config(None, ["run.name=abc"]).run.output_dir == "runs/abc"
    path = _yaml(tmp_path, "run: {name: a, output_dir: 'out/${run.name}/x'}\n")
    assert load_config(path).run.output_dir == "out/a/x"
    assert load_config(path, ["run.name=b"]).run.output_dir == "out/b/x"  # resolved after all layers


def test_unresolvable_interpolation_is_a_config_error():
    msg = _error(None, ["run.output_dir=${nope}"])
    assert "run.output_dir" in msg


# --- save / load round trip ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [
    [],
    ["objective.name=clm", "model.arch=gpt2", "train.epochs=1.5", "init.from=x/y"],
    ["objective.mask_prob=0.2", "data.paths=[a.txt]", "log.to=[console]", "tokenizer.special_tokens={pad: '<p>'}"],
])
def test_save_then_load_gives_equal_config(tmp_path, overrides):
    cfg = load_config(None, overrides)
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert to_dict(again) == to_dict(cfg)
    assert type(again.objective) is type(cfg.objective)


# --- errors: unknown keys -----------------------------------------------------------------------------------------


def test_unknown_top_level_key_names_key_and_file(tmp_path):
    path = _yaml(tmp_path, "bogus_section: 1\n")
    msg = _error(path)
    assert "bogus_section" in msg and str(path) in msg


def test_unknown_nested_key_names_dotted_key_and_file(tmp_path):
    path = _yaml(tmp_path, "train: {lr: 1.0e-3, learning_rate: 1.0e-3}\n")
    msg = _error(path)
    assert "train.learning_rate" in msg and str(path) in msg


def test_unknown_key_in_set_names_key_and_origin(tmp_path):
    path = _yaml(tmp_path, "train: {lr: 1.0e-3}\n")
    msg = _error(path, ["model.hiden_size=32"])
    assert "model.hiden_size" in msg and "--set" in msg and str(path) in msg


@pytest.mark.parametrize("where", ["yaml", "set"])
def test_unknown_objective_key_says_objective_dot_key(tmp_path, where):
    if where == "yaml":
        path = _yaml(tmp_path, "objective: {name: mlm, mask_probability: 0.2}\n")
        msg = _error(path)
        assert str(path) in msg
    else:
        msg = _error(None, ["objective.mask_probability=0.2"])
    assert "objective.mask_probability" in msg


def test_key_of_another_objective_is_unknown(tmp_path):
    path = _yaml(tmp_path, "objective: {name: clm, mask_prob: 0.1}\n")
    assert "objective.mask_prob" in _error(path)


def test_unknown_objective_name_lists_choices():
    msg = _error(None, ["objective.name=electra_typo"])
    assert "electra_typo" in msg and "mlm" in msg and "clm" in msg


# --- errors: types, ranges, choices -------------------------------------------------------------------------------


@pytest.mark.parametrize(("override", "key"), [
    ("train.lr=abc", "train.lr"),
    ("train.max_steps=1.5", "train.max_steps"),
    ("train.epochs=abc", "train.epochs"),
    ("train.gradient_checkpointing=maybe", "train.gradient_checkpointing"),
    ("objective.mask_prob=abc", "objective.mask_prob"),
])
def test_wrong_type_names_key(override, key):
    assert key in _error(None, [override])


def test_wrong_type_in_yaml_names_key_and_file(tmp_path):
    path = _yaml(tmp_path, "train: {max_steps: 1.5}\n")
    msg = _error(path)
    assert "train.max_steps" in msg and str(path) in msg


@pytest.mark.parametrize(("overrides", "key"), [
    (["train.batch_size=0"], "train.batch_size"),
    (["train.lr=0"], "train.lr"),
    (["train.warmup_steps=-1"], "train.warmup_steps"),
    (["train.num_workers=-1"], "train.num_workers"),
    (["data.validation_fraction=1.5"], "data.validation_fraction"),
    (["model.dropout=1.0"], "model.dropout"),
    (["objective.mask_prob=1.5"], "mask_prob"),
    (["objective.mask_prob=0"], "mask_prob"),
    (["objective.replace_with_random=-0.1"], "replace_with_random"),
    (["objective.replace_with_mask=0.8", "objective.replace_with_random=0.3"], "replace_with_random"),
])
def test_out_of_range_names_key(overrides, key):
    msg = _error(None, overrides)
    assert key in msg and "--set" in msg


@pytest.mark.parametrize("override", ["model.intermediate_size=-1", "model.intermediate_size=0",
                                      "model.vocab_size=-1", "train.adam_beta2=1.5", "train.adam_eps=-1"])
def test_out_of_range_model_and_optimizer_keys(override):
    assert override.split("=")[0] in _error(None, [override])


def test_objective_range_error_is_prefixed_with_objective():
    assert _error(None, ["objective.mask_prob=1.5"]).startswith("objective.mask_prob")


@pytest.mark.parametrize(("override", "key"), [
    ("model.arch=gpt5", "model.arch"),
    ("train.precision=fp8", "train.precision"),
    ("train.lr_schedule=step", "train.lr_schedule"),
    ("tokenizer.train.algorithm=sentencepiece", "tokenizer.train.algorithm"),
])
def test_bad_choice_names_key_and_choices(override, key):
    msg = _error(None, [override])
    assert key in msg and override.split("=")[1] in msg


def test_hidden_size_must_divide_by_heads():
    msg = _error(None, ["model.hidden_size=30", "model.num_heads=4"])
    assert "model.hidden_size" in msg and "model.num_heads" in msg
    load_config(None, ["model.hidden_size=32", "model.num_heads=4"])  # divisible: fine


def test_unknown_log_target():
    assert "log.to" in _error(None, ["log.to=[console, slack]"])


def test_override_without_equals_sign():
    assert "train.lr" in _error(None, ["train.lr"])


# --- errors: the file itself --------------------------------------------------------------------------------------


def test_yaml_that_is_not_a_mapping(tmp_path):
    path = _yaml(tmp_path, "- train\n- model\n")
    msg = _error(path)
    assert str(path) in msg and "mapping" in msg


def test_invalid_yaml_is_one_line_with_its_line_and_column(tmp_path):
    path = _yaml(tmp_path, "train: {lr: [1,\n")
    msg = _error(path)
    assert str(path) in msg and "YAML" in msg
    assert "\n" not in msg and re.search(r"at line \d+, column \d+", msg)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    msg = _error(path)
    assert str(path) in msg and "does not exist" in msg


def test_empty_yaml_gives_defaults(tmp_path):
    assert to_dict(load_config(_yaml(tmp_path, "# only a comment\n"))) == to_dict(load_config())


def test_section_given_a_scalar_names_the_section(tmp_path):
    path = _yaml(tmp_path, "train: 3\n")
    msg = _error(path)
    assert re.search(r"\btrain\b", msg) and str(path) in msg


def test_objective_given_a_string_is_a_config_error(tmp_path):
    path = _yaml(tmp_path, "objective: mlm\n")
    msg = _error(path)
    assert "objective" in msg and str(path) in msg


# --- field docs ---------------------------------------------------------------------------------------------------


def test_field_docs_cover_public_keys():
    rows = {key: (type_name, default, doc) for key, type_name, default, doc in field_docs()}
    for key in ("train.lr", "init.from", "run.output_dir", "data.block_size", "tokenizer.train.algorithm",
                "model.arch", "objective"):
        assert key in rows, key
        assert rows[key][2].strip(), f"{key} has no doc"
    assert "init.from_" not in rows
    assert rows["train.lr"][1] == 5.0e-4
    assert rows["init.from"][1] is None


def test_field_docs_list_every_leaf_of_the_saved_config():
    keys = {row[0] for row in field_docs()}

    def leaves(tree, prefix=""):
        for k, v in tree.items():
            if isinstance(v, dict) and k not in ("special_tokens",) and prefix + k != "objective":
                yield from leaves(v, f"{prefix}{k}.")
            else:
                yield prefix + k

    missing = set(leaves(to_dict(load_config()))) - keys
    assert not missing


def test_a_key_written_twice_is_refused(tmp_path):
    path = _yaml(tmp_path, "train:\n  max_steps: 5\n  max_steps: 6\n")
    msg = _error(path)
    assert str(path) in msg and "'max_steps' is written twice at line 3" in msg


def test_a_config_that_is_not_utf8_names_the_file(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("run: {name: caf\u00e9}\n".encode("latin-1"))
    msg = _error(path)
    assert str(path) in msg and "not UTF-8" in msg


def test_a_folder_is_not_a_config(tmp_path):
    assert "is a folder" in _error(tmp_path)


def test_an_override_that_is_not_yaml_names_the_key_and_how_to_quote():
    msg = _error(None, ["data.paths=[*.txt]"])
    assert "\n" not in msg and msg.startswith("--set data.paths: '[*.txt]' is not valid YAML") and "quote" in msg


def test_a_section_with_every_key_commented_out_takes_the_defaults(tmp_path):
    path = _yaml(tmp_path, "train:\n#  max_steps: 5\nrun: {seed: 3}\n")
    cfg = load_config(path)
    assert cfg.train.max_steps == load_config().train.max_steps and cfg.run.seed == 3


def test_an_optional_mapping_can_still_be_unset(tmp_path):
    path = _yaml(tmp_path, "tokenizer:\n  special_tokens: {pad: '[PAD]'}\n")
    assert load_config(path).tokenizer.special_tokens == {"pad": "[PAD]"}
    assert load_config(path, ["tokenizer.special_tokens=null"]).tokenizer.special_tokens is None


def test_one_string_where_a_list_belongs_is_a_list_of_it(tmp_path):
    assert load_config(None, ["data.paths=corpus.txt"]).data.paths == ["corpus.txt"]
    assert load_config(_yaml(tmp_path, "data: {paths: a.txt}\n")).data.paths == ["a.txt"]


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_seed_out_of_range(seed):
    assert "run.seed must be in [0, 2**32 - 1]" in _error(None, [f"run.seed={seed}"])


def test_a_vocabulary_beyond_any_in_use_is_refused_before_the_trainer_aborts():
    assert "tokenizer.train.vocab_size must be <= 16,777,216" in _error(None, ["tokenizer.train.vocab_size=3000000000"])
    load_config(None, [f"tokenizer.train.vocab_size={2**24}"])


@pytest.mark.parametrize(("override", "hint"), [("tokenizer.train.vocab=5", "did you mean 'tokenizer.train.vocab_size'?"),
                                                ("objective.mask_prb=0.2", "did you mean 'objective.mask_prob'?"),
                                                ("init.frm=x", "did you mean 'init.from'?"),
                                                # names transformers and peft give a setting
                                                ("adapter.rank=4", "did you mean 'adapter.r'?"),
                                                ("train.learning_rate=1e-3", "did you mean 'train.lr'?"),
                                                ("train.gradient_accumulation_steps=2",
                                                 "did you mean 'train.grad_accum'?"),
                                                ("train.zzz=1", "see `plm config show --doc`")])
def test_a_misspelt_key_gets_the_nearest_one(override, hint):
    message = _error(Path(__file__).parents[3] / "configs" / "debug" / "mlm.yaml", [override])
    assert f"unknown config key '{override.split('=')[0]}'" in message and hint in message
    if "zzz" in override:
        assert "did you mean" not in message

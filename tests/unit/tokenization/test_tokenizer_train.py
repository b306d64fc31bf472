"""train_tokenizer: every algorithm trains, saves and reloads with AutoTokenizer; special tokens and templates."""

from __future__ import annotations

import string

import pytest
from transformers import AutoTokenizer

from plmkit.config import TokenizerConfig, TokenizerTrainConfig
from plmkit.errors import ConfigError, DataError
from plmkit.tokenization import SPECIAL_ROLES, default_special_tokens, train_tokenizer

SAMPLES = ["Wrap a single paragraph of text.", "Return a list of wrapped lines!", "the [MASK] of <mask> here"]
VOCAB = {"bpe": 300, "wordpiece": 200, "unigram": 200}


def _cfg(algorithm="wordpiece", special_tokens=None, **train) -> TokenizerConfig:
    train = {"vocab_size": VOCAB[algorithm], "min_frequency": 2, **train}
    return TokenizerConfig(train=TokenizerTrainConfig(algorithm=algorithm, **train), special_tokens=special_tokens)


@pytest.mark.parametrize("algorithm", ["bpe", "wordpiece", "unigram"])
@pytest.mark.parametrize("arch", ["bert", "roberta", "gpt2"])
def test_trains_saves_and_reloads_with_same_ids(tiny_docs, tmp_path, algorithm, arch):
    tok = train_tokenizer(tiny_docs, _cfg(algorithm), arch, tmp_path, show_progress=False)
    assert (tmp_path / "tokenizer.json").is_file()
    assert tok.is_fast and len(tok) <= VOCAB[algorithm]

    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.special_tokens_map == tok.special_tokens_map
    assert loaded.special_tokens_map == {f"{role}_token": t for role, t in default_special_tokens(arch).items()}
    assert len(loaded) == len(tok) and loaded.model_input_names == tok.model_input_names
    for text in SAMPLES:
        assert dict(loaded(text)) == dict(tok(text))
    pair = tok(SAMPLES[0], SAMPLES[1])
    assert loaded(SAMPLES[0], SAMPLES[1])["input_ids"] == pair["input_ids"]
    if "mask" in default_special_tokens(arch):
        assert loaded.mask_token == tok.mask_token and loaded.mask_token_id == tok.mask_token_id


@pytest.mark.parametrize("algorithm", ["bpe", "wordpiece", "unigram"])
def test_special_tokens_get_stable_low_ids_and_never_split(tiny_docs, tmp_path, algorithm):
    tok = train_tokenizer(tiny_docs, _cfg(algorithm), "bert", tmp_path, show_progress=False)
    assert [tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id] == [0, 1, 2, 3, 4]
    ids = tok("a [MASK] b [SEP]", add_special_tokens=False)["input_ids"]
    assert tok.mask_token_id in ids and tok.sep_token_id in ids

    tok = train_tokenizer(tiny_docs, _cfg(algorithm), "roberta", tmp_path / "r", show_progress=False)
    assert tok.convert_tokens_to_ids(["<pad>", "<unk>", "<s>", "</s>", "<mask>"]) == [0, 1, 2, 3, 4]
    assert tok.bos_token_id == tok.cls_token_id and tok.eos_token_id == tok.sep_token_id


@pytest.mark.parametrize("algorithm", ["bpe", "unigram"])
def test_mask_takes_the_space_before_it(tiny_docs, tmp_path, algorithm):
    tok = train_tokenizer(tiny_docs, _cfg(algorithm), "roberta", tmp_path, show_progress=False)
    for t in (tok, AutoTokenizer.from_pretrained(tmp_path)):
        ids = t("text <mask>", add_special_tokens=False)["input_ids"]
        assert ids == t("text", add_special_tokens=False)["input_ids"] + [t.mask_token_id]


def test_bert_template_adds_cls_and_sep(tiny_docs, tmp_path):
    tok = train_tokenizer(tiny_docs, _cfg("wordpiece"), "bert", tmp_path, show_progress=False)
    ids = tok("wrap the text")["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    a, b = (tok(t, add_special_tokens=False)["input_ids"] for t in ("wrap", "text"))
    pair = tok("wrap", "text")
    assert pair["input_ids"] == [tok.cls_token_id, *a, tok.sep_token_id, *b, tok.sep_token_id]
    assert pair["token_type_ids"] == [0] * (len(a) + 2) + [1] * (len(b) + 1)


def test_roberta_template_uses_double_separator(tiny_docs, tmp_path):
    tok = train_tokenizer(tiny_docs, _cfg("bpe"), "roberta", tmp_path, show_progress=False)
    a, b = (tok(t, add_special_tokens=False)["input_ids"] for t in ("wrap", "text"))
    s, e = tok.cls_token_id, tok.sep_token_id
    assert tok("wrap", "text")["input_ids"] == [s, *a, e, e, *b, e]
    assert "token_type_ids" not in tok("wrap")


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_causal_archs_add_no_special_tokens(tiny_docs, tmp_path, arch):
    tok = train_tokenizer(tiny_docs, _cfg("bpe"), arch, tmp_path, show_progress=False)
    assert tok("wrap the text")["input_ids"] == tok("wrap the text", add_special_tokens=False)["input_ids"]
    assert tok.eos_token == tok.bos_token == "<|endoftext|>" and tok.pad_token == "<|pad|>"
    assert tok.pad_token_id == 0 and tok.eos_token_id == 1
    assert tok.decode(tok("Wrap a line.")["input_ids"]) == "Wrap a line."


def test_t5_ends_a_text_with_eos_as_its_span_corruption_inputs_do(tiny_docs, tmp_path):
    """T5's own tokenizers append </s>; without it generate() reads inputs unlike training, and seq2seq labels
    made with the tokenizer never learn to stop."""
    tok = train_tokenizer(tiny_docs, _cfg("unigram"), "t5", tmp_path, show_progress=False)
    for loaded in (tok, AutoTokenizer.from_pretrained(tmp_path)):
        plain = loaded("wrap the text", add_special_tokens=False)["input_ids"]
        assert loaded("wrap the text")["input_ids"] == [*plain, loaded.eos_token_id]
        assert loaded.decode(loaded("Wrap a line.")["input_ids"], skip_special_tokens=True) == "Wrap a line."


@pytest.mark.parametrize("algorithm", ["bpe", "wordpiece", "unigram"])
def test_lowercase(tiny_docs, tmp_path, algorithm):
    tok = train_tokenizer(tiny_docs, _cfg(algorithm, lowercase=True), "bert", tmp_path, show_progress=False)
    assert tok("Wrap TEXT")["input_ids"] == tok("wrap text")["input_ids"]
    assert tok.mask_token_id in tok("Wrap [MASK]")["input_ids"]  # special tokens are matched before lowercasing
    learned = [t for t in tok.get_vocab() if len(t.strip("#▁Ġ")) > 1 and t not in tok.all_special_tokens]
    assert learned and not any(set(t) & set(string.ascii_uppercase) for t in learned)
    cased = train_tokenizer(tiny_docs, _cfg(algorithm), "bert", tmp_path / "cased", show_progress=False)
    assert cased("Wrap TEXT")["input_ids"] != cased("wrap text")["input_ids"]


@pytest.mark.parametrize("algorithm", ["bpe", "wordpiece", "unigram"])
@pytest.mark.parametrize(("lowercase", "strip_accents", "stripped"), [(True, None, None), (False, None, False),
                                                                    (True, False, False), (False, True, True)])
def test_strip_accents(tiny_docs, tmp_path, algorithm, lowercase, strip_accents, stripped):
    """null follows lowercase for wordpiece (BERT-uncased) and is off for bpe and unigram; set, it decides alone."""
    docs = [*tiny_docs, "café naïve がぎぐ ジャパン"] * 2
    cfg = _cfg(algorithm, lowercase=lowercase, strip_accents=strip_accents)
    tok = train_tokenizer(docs, cfg, "bert", tmp_path, show_progress=False)
    stripped = (algorithm == "wordpiece" and lowercase) if stripped is None else stripped
    text = "café がぎぐ ジャパン"
    same = tok(text)["input_ids"] == tok("cafe かきく シャハン")["input_ids"]
    assert same == stripped
    assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True).replace(" ", "") == (
        "cafeかきくシャハン" if stripped else text.replace(" ", ""))


def test_unigram_vocabulary_smaller_than_the_characters_is_a_config_error(tiny_docs, tmp_path):
    with pytest.raises(ConfigError, match=r"tokenizer\.train\.vocab_size 10 is smaller than the distinct characters"):
        train_tokenizer(tiny_docs, _cfg("unigram", vocab_size=10), "bert", tmp_path, show_progress=False)


def test_custom_special_tokens(tiny_docs, tmp_path):
    special = {"mask": "<M>", "eos": "<E>", "pad": "<P>", "unk": "<U>", "bos": "<B>"}
    tok = train_tokenizer(tiny_docs, _cfg("unigram", special_tokens=special), "llama", tmp_path, show_progress=False)
    assert tok.convert_tokens_to_ids(["<P>", "<U>", "<B>", "<E>", "<M>"]) == [0, 1, 2, 3, 4]
    assert tok.mask_token == "<M>" and tok.cls_token is None
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.mask_token_id == 4 and loaded("x <M> y")["input_ids"] == tok("x <M> y")["input_ids"]


def test_max_docs_limits_training_text(tmp_path):
    docs = ["alpha beta gamma"] * 5 + ["zebra " * 50] * 5
    tok = train_tokenizer(docs, _cfg("wordpiece", max_docs=5, min_frequency=1), "bert", tmp_path, show_progress=False)
    assert "alpha" in tok.get_vocab() and "zebra" not in tok.get_vocab()


def test_unknown_role_is_a_config_error(tiny_docs, tmp_path):
    with pytest.raises(ConfigError, match="unknown role.*sentinel") as e:
        train_tokenizer(tiny_docs, _cfg(special_tokens={"pad": "[PAD]", "sentinel": "<x>"}), "bert", tmp_path)
    assert all(role in str(e.value) for role in SPECIAL_ROLES)


def test_bad_arch_algorithm_and_vocab_are_config_errors(tiny_docs, tmp_path):
    with pytest.raises(ConfigError, match="model.arch"):
        default_special_tokens("xlnet")
    with pytest.raises(ConfigError, match="model.arch"):
        train_tokenizer(tiny_docs, _cfg(), "xlnet", tmp_path)
    cfg = _cfg()
    cfg.train.algorithm = "sentencepiece"
    with pytest.raises(ConfigError, match="tokenizer.train.algorithm"):
        train_tokenizer(tiny_docs, cfg, "bert", tmp_path)
    with pytest.raises(ConfigError, match="vocab_size must be >= 261"):
        train_tokenizer(tiny_docs, _cfg("bpe", vocab_size=200), "bert", tmp_path)
    with pytest.raises(ConfigError, match="no unk token"):
        train_tokenizer(tiny_docs, _cfg(special_tokens={"pad": "[PAD]"}), "bert", tmp_path)


@pytest.mark.parametrize("texts", [[], iter([]), ["", "  \n"]])
def test_empty_texts_are_a_data_error(tmp_path, texts):
    with pytest.raises(DataError, match="no text to train the tokenizer on"):
        train_tokenizer(texts, _cfg(), "bert", tmp_path)


def test_trains_from_a_generator(tiny_docs, tmp_path):
    tok = train_tokenizer((d for d in tiny_docs), _cfg(), "bert", tmp_path, show_progress=False)
    assert len(tok) > 100


@pytest.mark.parametrize("algorithm", ["bpe", "wordpiece", "unigram"])
def test_a_tokenizer_for_nfkc_text_normalises_raw_text_the_same_way(tmp_path, algorithm):
    """data.normalization NFKC trains on text whose full-width punctuation and digits became ASCII: raw text (what
    fine-tuning and transformers users feed it) must meet the same vocabulary, not the unknown token."""
    import unicodedata

    raw = ["这家酒店太差了，再也不来了！（１２３）", "房间很干净，服务也好：下次还来；价格１２３元。"] * 20
    docs = [unicodedata.normalize("NFKC", d) for d in raw]
    tok = train_tokenizer(docs, _cfg(algorithm, vocab_size=VOCAB[algorithm] + 100), "bert", tmp_path,
                          show_progress=False, nfkc=True)
    for loaded in (tok, AutoTokenizer.from_pretrained(tmp_path)):
        assert loaded(raw[0])["input_ids"] == loaded(docs[0])["input_ids"]
        assert loaded.unk_token_id not in loaded(raw[1])["input_ids"]
    plain = train_tokenizer(docs, _cfg(algorithm, vocab_size=VOCAB[algorithm] + 100), "bert", tmp_path / "plain",
                            show_progress=False)
    assert plain(raw[0])["input_ids"] != plain(docs[0])["input_ids"]  # without it, raw text meets other tokens


def test_the_trainers_progress_bar_keeps_off_stdout(tiny_docs, tmp_path, capfd):
    """stdout carries a command's one JSON line; the Rust progress bar writes to file descriptor 1 by itself."""
    train_tokenizer(tiny_docs, _cfg(), "bert", tmp_path, show_progress=True)
    print("after")  # stdout works again afterwards
    assert capfd.readouterr().out == "after\n"

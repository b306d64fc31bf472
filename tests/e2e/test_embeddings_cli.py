"""`plm embeddings train | neighbors | contrast` and `plm compare --static-vectors` as a user runs them: one JSON
line on stdout, errors as one line on stderr with exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "fixtures" / "tiny.txt"


@pytest.fixture(scope="module")
def glove_dir(plm, last_json, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli-glove") / "run"
    done = plm("embeddings", "train", "configs/embeddings/debug-glove.yaml", "--out", out, "--set", f"data.paths=[{TINY}]",
               "-q")
    assert done.returncode == 0, done.stderr
    result = last_json(done.stdout)
    assert result["method"] == "glove" and result["output_dir"] == str(out) and result["dim"] == 16
    return out


def test_train_then_neighbors(glove_dir, plm, last_json):
    assert (glove_dir / "vectors.txt").read_text().splitlines()[0].split()[1] == "16"
    done = plm("embeddings", "neighbors", glove_dir, "Text", "--k", "4")
    assert done.returncode == 0, done.stderr
    result = last_json(done.stdout)
    assert result["word"] == "text" and len(result["neighbors"]) == 4


def test_unknown_word_is_a_one_line_error(glove_dir, plm):
    done = plm("embeddings", "neighbors", glove_dir, "zyzzyva")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: 'zyzzyva' is not in the vocabulary of") and "Traceback" not in done.stderr


def test_unknown_key_is_a_one_line_error(plm, tmp_path):
    done = plm("embeddings", "train", "configs/embeddings/debug-word2vec.yaml", "--out", tmp_path, "--set", "word2vec.skipgram=1")
    assert done.returncode == 2 and "unknown config key 'word2vec.skipgram'" in done.stderr


@pytest.mark.slow
def test_word2vec_method_flag_and_contrast(plm, last_json, tiny_encoder, glove_dir, tmp_path):
    done = plm("embeddings", "train", "configs/embeddings/debug-glove.yaml", "--method", "word2vec", "--out", tmp_path / "w2v",
               "--set", f"data.paths=[{TINY}]", "-q")
    assert done.returncode == 0, done.stderr
    assert last_json(done.stdout)["method"] == "word2vec"
    png = tmp_path / "text.png"
    done = plm("embeddings", "contrast", "--model", tiny_encoder, "--vectors", glove_dir, "--word", "text",
               "--context", "Wrap the text.", "--context", "The text is a string.", "--sense", "a", "--sense", "b",
               "--out", png)
    assert done.returncode == 0, done.stderr
    result = last_json(done.stdout)
    assert result["static"]["min_cosine"] == 1.0 and len(result["contextual"]["cosine"]) == 2
    assert result["plot"] == str(png) and png.is_file()


def test_compare_static_vectors_flag_checks_the_folder(plm, tiny_encoder, tmp_path):
    train = tmp_path / "train.tsv"
    train.write_text("sentence\tlabel\n" + "".join(f"row {i} text\t{'yes' if i % 2 else 'no'}\n"
                                                   for i in range(20)), encoding="utf-8")
    done = plm("compare", "--model", tiny_encoder, "--task", "classification", "--train", train, "--out",
               tmp_path / "cmp", "--static-vectors", tmp_path)
    assert done.returncode == 2 and "--static-vectors" in done.stderr and "no vectors.txt there" in done.stderr


def test_config_check_takes_embedding_configs(plm, last_json):
    done = plm("config", "check", "configs/embeddings")
    assert done.returncode == 0, done.stderr
    assert last_json(done.stdout) == {"checked": len(list((ROOT / "configs/embeddings").glob("*.yaml")))}
    done = plm("config", "show", "configs/embeddings/glove-300d.yaml", "--set", "embeddings.dim=50")
    assert done.returncode == 0, done.stderr
    assert "method: glove" in done.stdout and "dim: 50" in done.stdout

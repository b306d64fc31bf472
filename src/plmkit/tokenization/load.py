"""Load an existing tokenizer (a saved folder or a hub id) as a fast Hugging Face tokenizer.

Try it:  plm pretrain configs/debug/mlm.yaml --set tokenizer.pretrained=runs/mlm-debug/final
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from plmkit.errors import CompatibilityError, DataError
from plmkit.paths import looks_local
from plmkit.tokenization.special import check_roles

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "tokenizer.model",
                   "spiece.model", "sentencepiece.bpe.model", "tekken.json")
_HINT = "set tokenizer.pretrained to a folder with tokenizer files, or unset it to train one (tokenizer.train)"


def _hint(source: str) -> str:
    """What to change, for a tokenizer named by the setting `source`."""
    if source == "tokenizer.pretrained":
        return _HINT
    other = "; or set tokenizer.pretrained to a tokenizer of its own" if source.startswith("init.from") else ""
    return f"{source} takes a model folder with tokenizer files (e.g. runs/NAME/final) or a hub id{other}"


def load_tokenizer(name_or_path: str, *, special_tokens: dict[str, str] | None = None,
                   source: str = "tokenizer.pretrained") -> PreTrainedTokenizerBase:
    """Load a fast tokenizer with `AutoTokenizer` (no remote code).

    Args:
        name_or_path: a local folder (as written by `save_pretrained`) or a Hugging Face hub id; hub ids need
            internet access or a copy in the local Hugging Face cache.
        special_tokens: role -> token (pad, unk, cls, sep, mask, bos, eos). Only roles the loaded tokenizer
            lacks are filled in: the token is added as a special token (growing the vocabulary when it is new,
            e.g. a pad token for GPT-2); roles the tokenizer already has keep their token.
        source: the setting or argument that named `name_or_path` (tokenizer.pretrained; init.from or a command's
            model argument where a model's own tokenizer is loaded), for the errors' advice.

    Returns:
        The tokenizer, fast (backed by `tokenizers`).

    Raises:
        DataError: the folder is missing or holds no tokenizer files, or the hub id cannot be reached.
        CompatibilityError: the tokenizer is not a fast one.
        ConfigError: `special_tokens` names an unknown role.
    """
    roles = check_roles(special_tokens) if special_tokens else {}
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise DataError(f"tokenizer path {path} is a file; point {source} at the folder that holds "
                            "tokenizer.json / tokenizer_config.json")
        if not any((path / name).is_file() for name in TOKENIZER_FILES):
            inside = sorted((not (sub / "config.json").is_file(), str(sub)) for sub in path.iterdir()  # models first
                            if sub.is_dir() and any((sub / name).is_file() for name in TOKENIZER_FILES))
            inside = [name for _, name in inside]
            below = f"; the folder below it, {inside[0]}, holds one: point {source} there" if inside else ""
            raise DataError(f"tokenizer folder {path} holds none of {', '.join(TOKENIZER_FILES[:4])}, ...{below}; "
                            f"{_hint(source)}")
    elif _looks_local(name_or_path):
        what = "tokenizer folder" if source == "tokenizer.pretrained" else "folder"
        raise DataError(f"{what} {path} does not exist ({source}); {_hint(source)}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path) if path.exists() else name_or_path,
                                                  trust_remote_code=False)
    except (OSError, ValueError) as e:
        where = (f"folder {path}" if path.exists() else
                 f"{name_or_path!r} (no local folder of that name; as a hub id it needs internet access or a cached copy)")
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataError(f"could not load a tokenizer from {where}: {reason}; {_hint(source)}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise CompatibilityError(f"{name_or_path} loads as {type(tokenizer).__name__}, not a fast tokenizer; plmkit "
                                 "needs one backed by `tokenizers` (a folder with tokenizer.json)")
    missing = {f"{role}_token": token for role, token in roles.items() if getattr(tokenizer, f"{role}_token") is None}
    if missing:
        tokenizer.add_special_tokens(missing)
    return tokenizer


def _looks_local(name: str) -> bool:
    return looks_local(name)

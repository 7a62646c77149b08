"""Text into token ids: tokenising, building a vocabulary, encoding with left padding, token windows.

Pure Python and numpy, so training (`text_csv`, `text_windows`, text columns),
prediction, serving and an ejected train.py share exactly the same steps. Id 0
is padding (`<pad>`), id 1 stands for every token outside the vocabulary
(`<unk>`), the vocabulary's tokens follow.
Sequences are cut to `max_len` tokens and padded on the left, so the last
position always holds a real token (what a recurrent model's `last` reads).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

import numpy as np

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
TOKENIZERS = ("word", "char")

# A word is a run of letters, digits and apostrophes; any other non-space character is a token of its own.
_WORD = re.compile(r"(?:[^\W_]|')+|\S")


def tokenize(text: str, kind: str = "word", lowercase: bool = True) -> list[str]:
    """The tokens of one text: words and punctuation marks (`word`) or characters (`char`)."""
    if lowercase:
        text = text.lower()
    if kind == "word":
        return _WORD.findall(text)
    if kind == "char":
        return list(text)
    raise ValueError(f"unknown tokenizer {kind!r}; tokenizers: {', '.join(TOKENIZERS)}")


def build_vocab(token_lists: Iterable[list[str]], size: int, min_count: int = 1) -> list[str]:
    """`<pad>`, `<unk>`, then the `size` most frequent tokens seen at least `min_count` times.

    Ties in frequency are broken alphabetically, so the vocabulary is the same on every run.
    """
    counts = Counter(tok for tokens in token_lists for tok in tokens)
    ranked = sorted((item for item in counts.items() if item[1] >= min_count), key=lambda kv: (-kv[1], kv[0]))
    return [PAD, UNK] + [tok for tok, _ in ranked[:size] if tok not in (PAD, UNK)]


def encode(token_lists: Iterable[list[str]], vocab: list[str], max_len: int) -> np.ndarray:
    """int64 ids [N, max_len]: each sequence cut to its first max_len tokens, left-padded with 0."""
    index = {tok: i for i, tok in enumerate(vocab)}
    rows = [[index.get(tok, UNK_ID) for tok in tokens[:max_len]] for tokens in token_lists]
    out = np.zeros((len(rows), max_len), dtype=np.int64)
    for r, ids in enumerate(rows):
        if ids:
            out[r, max_len - len(ids):] = ids
    return out


def encode_texts(texts: Iterable[str], vocab: list[str], max_len: int, kind: str = "word",
                 lowercase: bool = True) -> np.ndarray:
    """Tokenise and encode raw texts with a recorded vocabulary (prediction time)."""
    return encode([tokenize(t, kind, lowercase) for t in texts], vocab, max_len)


def token_stream(texts: list[str], kind: str, lowercase: bool, separator: str) -> list[str]:
    """Texts as one stream of tokens: characters of the texts joined by `separator`, or each text's words
    followed by `separator` (a language model's corpus)."""
    if kind == "char":
        return tokenize(separator.join(texts), kind, lowercase)
    return [token for text in texts for token in tokenize(text, kind, lowercase) + [separator]]


def windows(ids: np.ndarray, length: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, next) [N, length]: windows of `length` ids starting every `stride` ids, and the id after each
    position (what a language model learns to predict); no window when the ids are too few."""
    starts = range(0, len(ids) - length, stride)
    if not starts:
        return np.zeros((0, length), dtype=np.int64), np.zeros((0, length), dtype=np.int64)
    stacked = np.stack([ids[s:s + length + 1] for s in starts])
    return stacked[:, :-1], stacked[:, 1:]


def decode(ids, vocab: list[str]) -> list[str]:
    """The tokens of one id sequence, padding dropped (for reading encoded data back)."""
    return [vocab[i] if 0 <= i < len(vocab) else UNK for i in (int(x) for x in ids) if i != PAD_ID]

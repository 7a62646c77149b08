"""Text generation with an exported language model (`dslc generate`): onnxruntime and numpy only.

A language model reads token ids [B, T] and gives scores for the next token at
every step [B, T, V] (a `text_windows` spec such as char_gpt). Generation
encodes the prompt with the recorded tokenizer, then repeatedly runs the model
on the last `max_len` tokens (what its position table covers), divides the last
step's scores by the temperature, keeps the `top_k` best, and draws the next
token from a numpy generator seeded with `seed` — the same seed gives the same
text. Temperature 0 picks the best token every time.
"""

from __future__ import annotations

import numpy as np

from dslc.errors import UserError
from dslc.kit import text as text_lib


def _tokenizer(model) -> dict:
    pre = model.preprocessing or {}
    tok = pre.get("tokenizer")
    if pre.get("kind") != "text_windows" or not tok:
        raise UserError("dslc generate needs a language model: one trained on a text_windows source, which "
                        "predicts the next token at every step (e.g. specs/char_gpt.dlspec)")
    return tok


def next_token(scores: np.ndarray, temperature: float, top_k: int | None, rng: np.random.Generator) -> int:
    """The next token id from one step's scores [V]."""
    scores = scores.astype(np.float64)
    scores[text_lib.PAD_ID] = -np.inf                  # never padding
    if temperature <= 0:
        return int(np.argmax(scores))
    scores = scores / temperature
    if top_k is not None and 0 < top_k < len(scores):
        cut = np.partition(scores, -top_k)[-top_k]
        scores = np.where(scores >= cut, scores, -np.inf)
    p = np.exp(scores - np.max(scores))
    p /= p.sum()
    return int(rng.choice(len(p), p=p))


def generate(model, prompt: str, tokens: int, temperature: float = 1.0, top_k: int | None = None,
             seed: int = 0) -> str:
    """The prompt followed by `tokens` generated tokens, as text."""
    if tokens < 0:
        raise UserError("--tokens must not be negative")
    if temperature < 0:
        raise UserError("--temperature must not be negative (0 picks the best token every time)")
    tok = _tokenizer(model)
    vocab, kind = tok["vocab"], tok["kind"]
    separator = tok.get("separator", "\n")
    index = {t: i for i, t in enumerate(vocab)}
    words = text_lib.tokenize(prompt, kind, tok["lowercase"]) if prompt else [separator]
    ids = [index.get(t, text_lib.UNK_ID) for t in words]
    spec = model.inputs[0]
    window = int(tok.get("max_len") or 64)
    rng = np.random.default_rng(seed)
    out: list[int] = []
    for _ in range(tokens):
        context = np.asarray([ids[-window:]], dtype=spec.dtype)
        scores = model.run([context])[0]
        if scores.ndim != 3:
            raise UserError(f"the model gives scores of shape {list(scores.shape)}, not one per step [B, T, V]: "
                            "it is not a language model")
        token = next_token(scores[0, -1], temperature, top_k, rng)
        ids.append(token)
        out.append(token)
    pieces = [vocab[i] if 0 <= i < len(vocab) else text_lib.UNK for i in out]
    joined = "".join(pieces) if kind == "char" else " ".join(pieces)
    return prompt + joined

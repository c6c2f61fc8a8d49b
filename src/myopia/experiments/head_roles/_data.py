"""The data sets of ``head-roles``: token ids and the positions whose losses count.

- ``repeat``: BOS + n random tokens repeated once (only induction predicts the second copy); the
  tokens come from the whole vocabulary without specials, or (``repeat_tokens = "text"``) from
  the tokens that occur in the text's first 64 windows of 65 tokens;
- ``repeated-text``: BOS + n consecutive tokens of the text, repeated once;
- ``text``: windows of the text.

The repeats score the positions that predict tokens 2..n of the second copy; ``text`` every
position after BOS.
"""

from __future__ import annotations

import torch

from ...data import text_windows
from ._spec import HeadRolesSpec


def sequences(tokenizer, model, spec: HeadRolesSpec, data: str) -> tuple[torch.Tensor, slice]:
    """(ids (N, T), the scored loss positions) for the data set ``data``."""
    if data == "text":
        ids = text_windows(tokenizer, spec.text, spec.sequences, spec.text_len)  # (N, T)
        return ids, slice(1, None)
    n = spec.repeat_len
    if data == "repeated-text":
        half = text_windows(tokenizer, spec.text, spec.sequences, n + 1)[:, -n:]  # (N, n): without the BOS
    else:
        pool = token_pool(tokenizer, model, spec)
        g = torch.Generator().manual_seed(spec.seed)
        half = pool[torch.randint(len(pool), (spec.sequences, n), generator=g)]  # (N, n)
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    first = torch.full((spec.sequences, 1), bos if bos is not None else int(half[0, 0]), dtype=torch.long)
    ids = torch.cat([first, half, half], dim=1)  # (N, 1 + 2n)
    return ids, slice(n + 1, 2 * n)  # positions that predict tokens 2..n of the second copy


def token_pool(tokenizer, model, spec: HeadRolesSpec) -> torch.Tensor:
    """Token ids the random repeats draw from: the vocabulary without specials, or the text's tokens."""
    special = set(tokenizer.all_special_ids)
    if spec.repeat_tokens == "text":
        seen = torch.unique(text_windows(tokenizer, spec.text, 64, 65)).tolist()
        return torch.tensor([i for i in seen if i not in special])
    vocab = model.get_input_embeddings().weight.shape[0]
    return torch.tensor([i for i in range(min(vocab, len(tokenizer))) if i not in special])

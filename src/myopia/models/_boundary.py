"""Where the context ends and the scored continuation begins, in tokens.

A tokenizer can merge across the boundary of a (context, continuation) pair: SmolLM2
writes ``def f(x):\\n`` + ``    return x`` as ``...):``, ``\\n   ``, `` return``, `` x``,
with one token holding the context's newline and three of the continuation's spaces. Two
rules cut such a pair into (context tokens, scored tokens); the third rule, ``exact``,
needs no cut and lives in :mod:`._exact`.

- :func:`natural_cut`: the model's own tokenization of context + continuation. The
  context tokens are the joint tokens that end inside the context; the scored tokens are
  the rest, starting with the token that straddles the boundary (the context characters
  it covers are ``moved``). When the context's own tokens begin the joint ones, this is
  the literal conditional. A chat prompt keeps its template's tokens as rendered.
- :func:`lmeval_cut`: lm-evaluation-harness 0.4.13's ``HFLM.loglikelihood``: all trailing
  whitespace (``str.rstrip``) moves into the continuation; the context and the joint text
  are tokenized separately and the scored tokens are the joint tokens past the context's
  token count. Where those two tokenizations disagree the model sees a text that skips
  (``dropped``) or repeats (``repeated``) characters; the cut says which.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._errors import UserError

_RULES = {
    "natural": "the continuation's tokens in the model's own tokenization of prompt + continuation; a token "
               "that straddles the end of the prompt is scored, and the prompt characters it covers are "
               "reported as moved",
    "lm-eval": "lm-evaluation-harness's rule: trailing whitespace of the prompt moves into the continuation, "
               "the pair is tokenized jointly, and characters its two tokenizations drop or repeat are reported",
    "exact": "the string-level probability of the continuation after the prompt, summed over every "
             "tokenization (the answer begins with the continuation's text, whatever its tokens)",
}


def describe_boundary(boundary: str) -> str:
    """One sentence for reports: which boundary rule scored the continuations, and what it means."""
    return f'Continuations were scored with boundary "{boundary}": {_RULES[boundary]}.'


@dataclass
class Cut:
    """A (context, continuation) pair cut into token ids by a boundary rule."""

    ctx_ids: list[int]  # what the model conditions on
    cont_ids: list[int]  # what is scored
    moved: str = ""  # end of the context scored with the continuation
    dropped: str = ""  # characters of the pair no token the model sees spells
    repeated: str = ""  # end of the context the model sees twice
    boundary: str = "natural"  # the rule that made the cut


class Tokens:
    """The tokenizer operations the rules need, with the model's stand-in for an empty
    context (``prefix_token_id``: BOS, else EOS, as lm-evaluation-harness uses)."""

    def __init__(self, tokenizer, prefix_token_id: int | None, name: str):
        self.tokenizer = tokenizer
        self.prefix_token_id = prefix_token_id
        self.name = name

    def encode(self, text: str, special: bool) -> list[int]:
        return self.tokenizer(text, add_special_tokens=special)["input_ids"]

    def ends(self, text: str, ids: list[int], special: bool) -> list[int]:
        """The character offset in ``text`` where each token of ``ids`` (its encoding) ends;
        0 for special tokens the tokenizer adds."""
        if getattr(self.tokenizer, "is_fast", False):
            enc = self.tokenizer(text, add_special_tokens=special, return_offsets_mapping=True)
            if enc["input_ids"] == ids:
                return [end for _, end in enc["offset_mapping"]]
        # a tokenizer without offsets: the length of each decoded prefix
        return [len(self.tokenizer.decode(ids[: i + 1], skip_special_tokens=True,
                                          clean_up_tokenization_spaces=False))
                for i in range(len(ids))]

    def stand_in(self, ids: list[int]) -> list[int]:
        """``ids``, or the prefix token when the context has no token of its own."""
        if ids:
            return ids
        if self.prefix_token_id is None:
            raise UserError(f"empty context, and model {self.name} has no BOS/EOS token to stand in")
        return [self.prefix_token_id]


def natural_cut(tok: Tokens, context: str, continuation: str, chat: bool) -> Cut:
    """The ``natural`` rule (module docstring). ``context`` is the rendered text."""
    special = not chat  # a chat template already contains its special tokens
    ctx = tok.encode(context, special)
    joint = tok.encode(context + continuation, special)
    if len(joint) > len(ctx) and joint[: len(ctx)] == ctx:
        return Cut(tok.stand_in(ctx), joint[len(ctx):])
    if chat:  # the generation prompt stays as the template renders it
        return Cut(tok.stand_in(ctx), tok.encode(continuation, False))
    ends = tok.ends(context + continuation, joint, special)
    s = next((i for i, e in enumerate(ends) if e > len(context)), len(joint))
    start = ends[s - 1] if s > 0 else 0
    return Cut(tok.stand_in(joint[:s]), joint[s:], moved=context[start:])


def lmeval_cut(tok: Tokens, context: str, continuation: str) -> Cut:
    """The ``lm-eval`` rule, step for step as lm-evaluation-harness 0.4.13 encodes a pair
    (``TemplateLM.loglikelihood``, ``_encode_pair`` and ``HFLM.tok_encode``)."""
    if context == "":
        cont = tok.encode(continuation, False)
        if cont[:1] == [tok.prefix_token_id]:
            return Cut(cont[:1], cont[1:], boundary="lm-eval")
        return Cut(tok.stand_in([]), cont, boundary="lm-eval")
    stripped = context.rstrip()
    moved = context[len(stripped):]
    joint_text = context + continuation
    # tok_encode adds the tokenizer's special tokens unless the text already starts with BOS
    bos = tok.tokenizer.decode(tok.prefix_token_id) if tok.prefix_token_id is not None else None
    special = not (bos and stripped.startswith(bos))
    ctx = tok.encode(stripped, special)
    joint = tok.encode(joint_text, special)
    cut = Cut(tok.stand_in(ctx), joint[len(ctx):], moved=moved, boundary="lm-eval")
    if joint[: len(ctx)] != ctx and len(joint) > len(ctx):
        ends = tok.ends(joint_text, joint, special)
        seen = ends[len(ctx) - 1] if ctx else 0  # where the scored tokens' text begins
        if seen > len(stripped):
            cut.dropped = joint_text[len(stripped):seen]
        elif seen < len(stripped):
            cut.repeated = stripped[seen:]
    return cut

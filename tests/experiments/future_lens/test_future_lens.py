"""future-lens: probes recover a future token that is a function of the present and stay at
chance when it is not; baselines equal brute-force counts; a run end to end with every reader;
the linear probe's figures do not depend on the other readers; bad values are one line, exit 2."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict

import pytest
import torch
from click.testing import CliRunner

from myopia._cli import main
from myopia._io import read_parquet
from myopia.experiments.future_lens._baselines import bigram_logp, unigram_logp
from myopia.experiments.future_lens._classes import Classes, collapse_logits, score
from myopia.experiments.future_lens._probe import ProbeConfig, probe_logp, train_probes
from myopia.experiments.future_lens._states import hidden_states, pick_layers
from myopia.experiments.future_lens._summary import FutureLensHeadline
from myopia.runs import load_run, run


@pytest.fixture(scope="module")
def tiny_model(tiny_lm_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_lm_dir).eval()


def _probe_accuracy(model, train_ids, eval_ids, layer: int, K: int, v: int) -> list[float]:
    classes = Classes.top(train_ids, v)
    tr_h = hidden_states(model, train_ids, [layer], 32, None).states
    ev_h = hidden_states(model, eval_ids, [layer], 32, None).states
    n_tr, n_ev = len(train_ids) - K, len(eval_ids) - K
    tr_t = torch.stack([classes.of(train_ids[n : n + n_tr]) for n in range(1, K + 1)], 1)  # (n_tr, K)
    ev_t = torch.stack([classes.of(eval_ids[n : n + n_ev]) for n in range(1, K + 1)], 1)
    probe = train_probes(tr_h[layer][:n_tr], tr_t, classes.n, ProbeConfig(epochs=30, batch_size=256, lr=1e-2))
    lp = probe_logp(ev_h[layer][:n_ev], probe, classes.n)  # (n_ev, K, C)
    return [score(lp[:, k], ev_t[:, k])[0] for k in range(K)]


def test_probe_reads_a_future_that_the_present_determines(tiny_model):
    """A repeating cycle of 12 distinct tokens: t+1 and t+2 are functions of the token at t."""
    cycle = torch.tensor([7, 23, 41, 5, 88, 130, 17, 64, 99, 150, 33, 71])
    ids = cycle.repeat(60)  # (720,)
    acc = _probe_accuracy(tiny_model, ids[:560], ids[560:], layer=1, K=2, v=12)
    assert acc[0] > 0.95 and acc[1] > 0.95, acc


def test_probe_is_at_chance_on_random_tokens(tiny_model):
    g = torch.Generator().manual_seed(0)
    train_ids = torch.randint(3, 40, (1500,), generator=g)
    eval_ids = torch.randint(3, 40, (1500,), generator=g)
    acc = _probe_accuracy(tiny_model, train_ids, eval_ids, layer=2, K=2, v=37)
    chance = 1 / 37
    for a in acc:  # binomial sd at n=1500 is 0.004; a leak of the future would be far above
        assert a < chance + 0.02, acc


def test_baselines_equal_brute_force_counts():
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 30, (400,), generator=g)
    tokens[::3] = 5  # make some structure
    classes = Classes.top(tokens, 10)
    other = classes.n - 1
    N = 2
    cur, nxt = tokens[:-N], tokens[N:]
    cls = classes.of(nxt)
    eval_cur = torch.tensor([5, 0, 29, 31])  # 31 never seen: falls back to the unigram
    # brute force, from plain Python counters
    uni = Counter(cls.tolist())
    total = len(cls) + 0.5 * classes.n
    p_uni = [(uni[c] + 0.5) / total for c in range(classes.n)]
    pairs = defaultdict(Counter)
    for a, b in zip(cur.tolist(), cls.tolist()):
        pairs[a][b] += 1
    got_uni = unigram_logp(cls, classes.n).exp()
    assert torch.allclose(got_uni, torch.tensor(p_uni, dtype=torch.float64), atol=1e-12)
    got = bigram_logp(cur, cls, eval_cur, classes.n).exp()  # (4, C)
    for i, a in enumerate(eval_cur.tolist()):
        n_a = sum(pairs[a].values())
        want = [(pairs[a][c] + p_uni[c]) / (n_a + 1.0) for c in range(classes.n)]
        assert torch.allclose(got[i], torch.tensor(want, dtype=torch.float64), atol=1e-12)
    # accuracy never credits "other", and the kept classes are the most frequent tokens
    counts = Counter(tokens.tolist())
    assert set(classes.kept.tolist()) == {t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]}
    lp = torch.full((3, classes.n), -10.0)
    lp[:, other] = 0.0
    lp[:, 0] = -1.0
    acc, ce = score(lp, torch.tensor([other, 0, 1]))
    assert acc == pytest.approx(1 / 3) and ce == pytest.approx((0 + 1 + 10) / 3)


def test_collapsed_model_distribution_keeps_all_mass():
    logits = torch.randn(5, 50)
    classes = Classes(torch.tensor([3, 7, 11]), {3: 0, 7: 1, 11: 2})
    lp = collapse_logits(logits, classes)  # (5, 4)
    assert torch.allclose(lp.exp().sum(1), torch.ones(5, dtype=torch.float64), atol=1e-9)
    full = torch.log_softmax(logits.double(), -1)
    assert torch.allclose(lp[:, :3], full[:, [3, 7, 11]])
    assert pick_layers(19, 5) == [0, 4, 9, 14, 18] and pick_layers(3, 10) == [0, 1, 2]


@pytest.fixture(scope="module")
def lens_run(tiny_lm_dir, tmp_path_factory):
    """trained:ntp / trained:myopic (lab models trained in the cells) and an hf: model."""
    tmp_path = tmp_path_factory.mktemp("lens")
    text = tmp_path / "text.txt"
    lines = [f"the {w} sat on the {v}.\n" for w in ("cat", "dog", "king", "bird") for v in ("mat", "log", "tree")]
    text.write_text("".join(lines) * 40)
    train = '{name = "text", path = "%s", seq_len = 16, vocab_size = 300}' % text
    out = tmp_path / "run"
    overrides = [
        f'models=["trained:ntp", "trained:myopic", "hf:{tiny_lm_dir}"]',
        f"train.task={train}",
        "train.model=llama-tiny",
        "train.steps=6",
        "train.chunk=3",
        "train.batch_size=8",
        "train.eval_every=0",
        f"text={text}",
        "max_train_tokens=600",
        "max_eval_tokens=200",
        "vocab=40",
        "probe_epochs=2",
        "state_epochs=1",
        "prompt_steps=2",
        "context=16",
    ]
    return run("future-lens", overrides, out=out), out


METHODS = ["linear", "future-state", "transplant", "learned-prompt"]


def test_future_lens_run(lens_run, tiny_lm_dir):
    r, out = lens_run
    assert r.cells_run == 3
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["models"]) == {"trained:ntp", "trained:myopic", f"hf:{tiny_lm_dir}"}
    for m in summary["models"].values():
        assert set(m["offsets"]) == {"1", "2", "3"} and m["model_accuracy"] is not None
        for o in m["offsets"].values():
            assert list(o["methods"]) == METHODS
            assert all(0 <= f["best_accuracy"] <= 1 for f in o["methods"].values())
            assert o["best_method"] == max(METHODS, key=lambda k: o["methods"][k]["best_accuracy"])
    assert set(summary["vanilla_minus_myopic"]) == set(METHODS)
    ntp, myo = r.summary.models["trained:ntp"], r.summary.models["trained:myopic"]
    for method in METHODS:
        assert set(summary["vanilla_minus_myopic"][method]) == {"1", "2", "3"}
        want = ntp.offsets["2"].methods[method].best_accuracy - myo.offsets["2"].methods[method].best_accuracy
        assert r.summary.vanilla_minus_myopic[method]["2"] == want
    probes = read_parquet(out / "results" / "probes.parquet")
    # every reader at every layer (2-layer models: 0, 1, 2; model_layers 3) x 3 offsets, per model, but
    # the learned prompt at the last layer: t+1 alone
    assert len(probes) == 3 * (4 * 3 * 3 - 2) and all(math.isfinite(p["cross_entropy"]) for p in probes)
    assert {p["method"] for p in probes} == set(METHODS)
    assert {p["offset"] for p in probes if p["method"] == "learned-prompt" and p["layer"] == 2} == {1}
    assert all((p["train_accuracy"] is None) == (p["method"] != "linear") for p in probes)
    info = read_parquet(out / "results" / "info.parquet")
    assert all(r[f"seconds_{m}"] >= 0 for r in info for m in METHODS)
    assert (out / "work" / "trained_ntp" / "train" / "config.json").is_file()  # the lab model, reusable as lab:DIR
    assert len(list((out / "figures").glob("*.png"))) == 1
    html = (out / "report.html").read_text()
    assert "<h2>Summary</h2>" in html and "learned-prompt" in html


def test_linear_probe_figures_do_not_depend_on_the_other_readers(lens_run, tiny_lm_dir, tmp_path):
    """The same spec with the linear probe alone gives the same linear rows, bit for bit."""
    _, out = lens_run
    exp, spec, _ = load_run(out)
    model = f"hf:{tiny_lm_dir}"
    overrides = [f'models=["{model}"]', 'methods=["linear"]']
    for key in ("text", "max_train_tokens", "max_eval_tokens", "vocab", "probe_epochs", "context"):
        overrides.append(f"{key}={json.dumps(getattr(spec, key))}")
    run("future-lens", overrides, out=tmp_path / "linear")
    alone = read_parquet(tmp_path / "linear" / "results" / "probes.parquet")
    every = read_parquet(out / "results" / "probes.parquet")
    every = [p for p in every if p["model"] == model and p["method"] == "linear"]
    assert alone == every and len(alone) == 9


def test_headline_round_trips(lens_run):
    """summary.json validates back into the typed headline: the same keys and the same end-of-run table."""
    r, out = lens_run
    text = (out / "summary.json").read_text()
    back = FutureLensHeadline.model_validate_json(text)
    assert back.model_dump(mode="json") == json.loads(text) == r.summary.model_dump(mode="json")
    assert back.table() == r.summary.table()
    header, rows = back.table()
    assert header == ["model", "offset", "linear", "future-state", "transplant", "learned-prompt", "best (layer)",
                      "bigram", "unigram", "model"]
    assert [row[1] for row in rows[:3]] == ["t+1", "t+2", "t+3"] and len(rows) == 9
    assert rows[0][9] == r.summary.models["trained:ntp"].model_accuracy and rows[1][9] is None  # own: t+1 only
    o = r.summary.models["trained:ntp"].offsets["1"]
    assert rows[0][6] == f"{o.best_method} ({o.methods[o.best_method].best_layer})"


def test_vanilla_minus_myopic_is_absent_without_both_lab_models(lens_run, tiny_lm_dir):
    """Summarized for the hf: model alone, the headline has no vanilla_minus_myopic key (not null)."""
    exp, spec, tables = load_run(lens_run[1])
    alone = spec.model_copy(update={"models": [f"hf:{tiny_lm_dir}"]})
    data = exp.summarize(tables, alone).model_dump(mode="json")
    assert "vanilla_minus_myopic" not in data and set(data["models"]) == {f"hf:{tiny_lm_dir}"}
    assert FutureLensHeadline.model_validate(data).model_dump(mode="json") == data


@pytest.mark.parametrize(
    "sets, message",
    [
        (['methods=["linear", "lens"]'],
         "unknown method 'lens'; accepted: linear, future-state, transplant, learned-prompt"),
        (["offsets=8", "text={text}"], "is too short for offsets up to 8"),
        (['models=["trained:ntp"]', "train.model=llama-tiny", "layers=[0, 3]"],
         "layer 3 is out of range for trained:ntp: llama-tiny has layers 0..2"),
        (['models=["hf:{lm}"]', "layers=[1, 5]", "text={long}"], "layer 5 is out of range for hf:"),
        (["layers=[-1]"], "layer -1 is negative"),
    ],
)
def test_bad_values_are_one_line_exit_2(sets, message, tiny_lm_dir, tmp_path):
    (tmp_path / "short.txt").write_text("To be, or not")
    (tmp_path / "long.txt").write_text("To be, or not to be, that is the question. " * 20)
    args = ["run", "future-lens", "--out", str(tmp_path / "run")]
    for s in sets:
        args += ["--set", s.format(text=tmp_path / "short.txt", long=tmp_path / "long.txt", lm=tiny_lm_dir)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output
    lines = [line for line in r.output.splitlines() if line.strip() and "future-lens: cell" not in line]
    assert len(lines) == 1 and message in lines[0], r.output
    assert "Traceback" not in r.output

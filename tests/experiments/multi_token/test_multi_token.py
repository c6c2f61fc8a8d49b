"""multi-token: a tiny run end to end (lab checkpoints with their heads kept in work/, the typed
headline, the report, resume), the names part on a few plays, the Clever-Hans diagnosis on
hand-made results, intervals over seeds, and the one-line errors of the spec."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from myopia import UserError
from myopia._cli import main
from myopia._io import read_parquet
from myopia.experiments.multi_token._clever_hans import diagnose, escapes_chance, later_teacher_forced
from myopia.experiments.multi_token._summary import MultiTokenHeadline, summarize
from myopia.runs import resolve_spec, run

TINY = [
    'parts=["path-star", "addition"]',
    "path_star.graphs=[{degree = 2, path_len = 3, n_nodes = 8}]",
    'path_star.objectives=["ntp", "reverse", "teacherless", "mtp-seq:2"]',
    "path_star.seeds=[0, 1]",
    'path_star.task={name = "path-star", n_train = 64, n_test = 16}',
    "path_star.model_overrides={n_layer = 2}",
    "path_star.steps=6",
    "path_star.chunk=3",
    "path_star.eval_every=3",
    "path_star.batch_size=8",
    'addition.task={name = "addition", n_digits = 2, min_digits = 1, n_test = 8}',
    'addition.formats=["plain", "pause", "scratchpad", "mtp:2"]',
    "addition.pauses=2",
    "addition.seeds=[0]",
    "addition.steps=4",
    "addition.chunk=0",
    "addition.eval_every=0",
    "addition.batch_size=8",
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("multi") / "run"
    return run("multi-token", TINY, out=out), out


def test_tiny_run_end_to_end(tiny_run):
    r, out = tiny_run
    assert r.cells_run == 4 * 2 + 4  # path-star objectives x seeds, addition formats
    finals = read_parquet(out / "results" / "finals.parquet")
    assert {(f["part"], f["condition"], f["objective"]) for f in finals} >= {
        ("path-star", "G2-3-N8", "mtp-seq:2"),
        ("addition", "pause", "ntp"),
        ("addition", "mtp:2", "mtp:2"),
    }
    # each cell is kept as a lab checkpoint in the run's work/, the objective's extra weights beside it
    seq = next(f for f in finals if f["objective"] == "mtp-seq:2")
    assert seq["checkpoint"].startswith(str(out / "work"))
    assert (out / "work").is_dir() and not list((out / "work").rglob("checkpoints"))  # chunks cleaned up
    from pathlib import Path

    assert (Path(seq["checkpoint"]) / "mtp_seq_modules.safetensors").is_file()
    mtp = next(f for f in finals if f["objective"] == "mtp:2")
    spec = json.loads((Path(mtp["checkpoint"]) / "spec.json").read_text())
    assert spec["mtp_from_trunk"] is False and spec["model"]["n_layer"] is None  # added heads: 2 layers kept
    heads = read_parquet(out / "results" / "heads.parquet")
    assert {h["objective"] for h in heads} == {"mtp-seq:2", "mtp:2"} and {h["head"] for h in heads} == {2}
    positions = read_parquet(out / "results" / "positions.parquet")
    assert sorted({p["position"] for p in positions}) == [0, 1, 2]
    for f in (f for f in finals if f["part"] == "path-star"):  # the later steps: positions 2..l-1
        mine = [p for p in positions if (p["objective"], p["seed"]) == (f["objective"], f["seed"])]
        assert f["later_teacher_forced"] == next(p["teacher_forced"] for p in mine if p["position"] == 2)
    digits = read_parquet(out / "results" / "digits.parquet")
    formats = ("plain", "pause", "scratchpad", "mtp:2")
    assert {(d["condition"], d["n_digits"]) for d in digits} == {(f, n) for f in formats for n in (1, 2)}
    # every answer digit of every n, most significant first; the first is the first-digit figure
    answer = read_parquet(out / "results" / "answer_digits.parquet")
    assert {(a["condition"], a["n_digits"], a["position"]) for a in answer} == {
        (f, n, j) for f in formats for n in (1, 2) for j in range(n + 1)
    }
    top = {(a["condition"], a["n_digits"]): a["accuracy"] for a in answer if a["position"] == 0}
    assert all(top[(d["condition"], d["n_digits"])] == d["first_digit_accuracy"] for d in digits)


def test_tiny_run_headline_and_report(tiny_run):
    r, out = tiny_run
    finals = read_parquet(out / "results" / "finals.parquet")
    text = (out / "summary.json").read_text()
    summary = MultiTokenHeadline.model_validate_json(text)
    assert summary.model_dump(mode="json") == json.loads(text) == r.summary.model_dump(mode="json")
    g = summary.path_star["G2-3-N8"]
    assert list(g.objectives) == ["ntp", "reverse", "teacherless", "mtp-seq:2"] and g.chance == 0.5
    ntp = g.objectives["ntp"]
    acc = [f["accuracy"] for f in finals if f["objective"] == "ntp"]
    assert ntp.accuracy.n == 2 and ntp.accuracy.mean == pytest.approx(sum(acc) / 2)
    assert g.objectives["teacherless"].diagnosis in ("not learned", "escapes 1/d", "solved")
    assert list(summary.addition) == ["plain", "pause", "scratchpad", "mtp:2"]
    assert summary.addition["mtp:2"].objective == "mtp:2" and set(summary.addition["pause"].by_digits) == {1, 2}
    assert summary.names == {}
    header, rows = summary.table()
    assert header[:4] == ["part", "condition", "objective", "metric"] and len(rows) == 4 + 4 * 2
    by = summary.addition["plain"].by_digits
    assert [len(by[n].by_position) for n in (1, 2)] == [2, 3]
    assert by[2].by_position[0].mean == by[2].first_digit.mean
    # accuracy, positions, heatmap, answer digits, loss, teacher-forced
    assert len(list((out / "figures").glob("*.png"))) == 6
    html = (out / "report.html").read_text()
    assert "escape" in html and "Clever Hans" in html and html.index("<h2>Summary</h2>") < html.index("<img")


def test_tiny_run_resumes_without_recomputing(tiny_run):
    _, out = tiny_run
    before = (out / "results" / "finals.parquet").read_bytes()
    again = run("multi-token", TINY, out=out)  # finished cells are neither recomputed nor lost
    assert again.cells_run == 0
    assert (out / "results" / "finals.parquet").read_bytes() == before


def test_names_part_on_a_few_plays(shakespeare_cache, monkeypatch, tmp_path):
    import myopia.tasks._text as text

    plays = text.shakespeare_files()
    some = {k: plays[k] for k in ("hamlet", "tempest", "othello")}
    monkeypatch.setattr(text, "shakespeare_files", lambda: some)
    overrides = [
        'parts=["names"]',
        'names.task={name = "shakespeare-names", seq_len = 128, val_plays = ["tempest"], eval_windows = 64, '
        "vocab_size = 512}",
        'names.objectives=["ntp", "mtp:2"]',
        "names.seeds=[0]",
        "names.steps=3",
        "names.eval_every=0",
        "names.batch_size=4",
        "names.eval_batches=1",
        "names.keep_weights=false",
    ]
    out = tmp_path / "run"
    r = run("multi-token", overrides, out=out)
    s = r.summary
    assert list(s.names) == ["ntp", "mtp:2"] and s.path_star == {} and s.addition == {}
    assert s.names["ntp"].n_params == s.names["mtp:2"].n_params  # parameter-matched (heads from the trunk)
    finals = {f["objective"]: f for f in read_parquet(out / "results" / "finals.parquet")}
    assert s.names["mtp:2"].head1_loss.mean == finals["mtp:2"]["eval_loss"]  # the next-token model's loss
    names = read_parquet(out / "results" / "names.parquet")
    assert all(n["repeats"] > 0 and 0 <= n["name_accuracy"] <= 1 for n in names)
    assert not list((out / "work").rglob("*.safetensors"))  # keep_weights=false


def _iv(mean, lo=None, hi=None, n=3):
    return {"mean": mean, "ci_low": lo, "ci_high": hi, "n": n}


def test_diagnosis_tells_the_cheat_from_not_converged():
    half = _iv(0.5, 0.47, 0.53)
    assert diagnose(half, _iv(0.99), 2) == "Clever Hans"
    assert diagnose(_iv(0.16, 0.1, 0.2), _iv(0.6), 2) == "not converged"  # DESIGN.md's 2,500-step ntp
    assert diagnose(_iv(0.97, 0.95, 0.99), _iv(1.0), 2) == "solved"
    assert diagnose(_iv(0.7, 0.6, 0.8), _iv(1.0), 2) == "escapes 1/d"
    assert diagnose(_iv(0.01, 0.0, 0.02), _iv(0.05), 2, teacher_forced=False) == "not learned"
    assert diagnose(_iv(None, n=0), _iv(None, n=0), 2) == "no result"
    assert escapes_chance(_iv(0.6, 0.45, 0.75), 2) is False  # the interval reaches 1/d
    assert escapes_chance(_iv(0.6, n=1), 2) is True and escapes_chance(_iv(0.52, n=1), 2) is False  # a margin
    assert escapes_chance(_iv(0.4, 0.36, 0.44), 3) is True  # 1/3 on G(3, l)
    metrics = {"teacher_forced_accuracy_0": 1.0, "teacher_forced_accuracy_1": 0.5, "teacher_forced_accuracy_2": 0.8,
               "teacher_forced_accuracy_3": 1.0}  # fmt: skip
    assert later_teacher_forced(metrics, 4) == pytest.approx(0.9)  # positions 2 and 3


def test_summary_intervals_over_seeds():
    finals = [
        {
            "part": "path-star",
            "condition": "G2-4-N20",
            "objective": "ntp",
            "seed": s,
            "degree": 2,
            "accuracy": a,
            "first_step_accuracy": a,
            "later_teacher_forced": 1.0,
        }  # fmt: skip
        for s, a in enumerate([0.49, 0.51, 0.50])
    ]
    _, spec = resolve_spec("multi-token", [], check=False)
    s = summarize({"finals": finals}, spec)
    r = s.path_star["G2-4-N20"].objectives["ntp"]
    assert r.accuracy.mean == pytest.approx(0.5) and r.accuracy.n == 3
    assert r.accuracy.ci_low == pytest.approx(0.5 - 4.303 * 0.01 / 3**0.5)  # t(2) = 4.303, sd = 0.01
    assert r.diagnosis == "Clever Hans" and r.escapes_chance is False
    assert s.clever_hans == ["G2-4-N20 ntp"] and "G3-4-N20" not in s.path_star


@pytest.mark.parametrize(
    "override, message",
    [
        ('addition.formats=["pauses"]', r"format 'pauses' is none of plain, reversed, pause, scratchpad"),
        ("path_star.model_overrides={n_layer = 2}", r"mtp:4 takes 3 head layers from the model's 2 layers"),
        ('parts=["graphs"]', r"unknown part\(s\) graphs; accepted: path-star, addition, names"),
        ('names.objectives=["mtp-seq:0"]', r"objective 'mtp-seq:0': N in mtp-seq:N must be an integer from 1"),
        ('path_star.objectives=["mtp-seq:x"]', r"N in mtp-seq:N must be an integer"),
        ('names.task={name = "shakespeare-names", pauses = 2}', r"takes no pause tokens"),
        ('path_star.task={name = "path-star", pauses = 2}', r"takes no pause tokens"),
        ('addition.task={name = "addition", n_digits = 3, pauses = 2}', r"task.pauses is set per format"),
        ("addition.pauses=0", r"addition.pauses"),
        ('names.task={name = "shakespeare-names", name_tokens = 9}', r"name_tokens"),
        ("path_star.graphs=[{degree = 3, path_len = 4, n_nodes = 5}]", r"n_nodes=5 is less than the 10 nodes"),
        ('names.task={name = "addition"}', r"task.name must be 'shakespeare-names'"),
        ("path_star.seeds=[0, 0]", r"seeds are listed twice"),
    ],
)
def test_spec_errors_are_one_line(override, message):
    with pytest.raises(UserError, match=message) as err:
        resolve_spec("multi-token", [override], check=False)
    assert "\n" not in str(err.value)


def test_a_name_length_the_tokenizer_cannot_make_stops_before_any_cell(shakespeare_cache, monkeypatch, tmp_path):
    import myopia.tasks._text as text

    plays = text.shakespeare_files()
    monkeypatch.setattr(text, "shakespeare_files", lambda: {k: plays[k] for k in ("hamlet", "tempest")})
    task = '{name = "shakespeare-names", val_plays = ["tempest"], vocab_size = 260}'  # bytes: no two-token names
    with pytest.raises(UserError, match=r"cannot make \d+ names of exactly name_tokens=2 tokens") as err:
        run("multi-token", ['parts=["names"]', f"names.task={task}"], out=tmp_path / "run")
    assert "\n" not in str(err.value) and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "override, named",
    [
        ('parts=["path-star", "bogus"]', "unknown part(s) bogus"),
        ('path_star.objectives=["ntp", "mtp-seq:0"]', "mtp-seq:0"),
    ],
)
def test_cli_bad_part_or_objective_is_one_line_exit_2(override, named, tmp_path):
    res = CliRunner().invoke(main, ["run", "multi-token", "--set", override, "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and res.output.strip().count("\n") == 0 and "Traceback" not in res.output
    assert named in res.output and "accepted" in res.output and not (tmp_path / "r").exists()

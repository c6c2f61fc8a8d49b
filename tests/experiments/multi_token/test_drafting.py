"""multi-token's drafting measurement: a cell's own mtp model drafts on held-out prompts of its task,
its output equals plain greedy decoding's, and the rows pool seeds per condition."""

from __future__ import annotations

import pytest
import torch

from myopia.experiments.multi_token._drafting import (
    DraftingSpec,
    drafting_records,
    drafting_rows,
    drafting_section,
    drafts,
    held_out_prompts,
)
from myopia.lab import TrainConfig, train
from myopia.tasks._base import Batch

TASK = {"name": "path-star", "degree": 2, "path_len": 3, "n_nodes": 8, "n_train": 64, "n_test": 16}


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    """Two seeds of a tiny path-star model trained with mtp:3 (a few steps: the heads guess)."""
    root = tmp_path_factory.mktemp("drafting")
    out = []
    for seed in (0, 1):
        cfg = TrainConfig(task=TASK, objective="mtp:3", model={"name": "gpt2-tiny", "n_layer": 3}, steps=6,
                          batch_size=8, eval_every=0, checkpoint_every=0, threads=1, progress=False, seed=seed,
                          out=str(root / f"s{seed}"))
        result = train(cfg)
        out.append((seed, cfg, result.out_dir))
    return out


def test_which_objectives_draft():
    assert [drafts(o) for o in ("mtp:2", "mtp-seq:4", "mtp:1", "ntp", "reverse", "myopic")] == [
        True, True, False, False, False, False,
    ]  # fmt: skip


def test_a_cells_model_drafts_on_its_tasks_held_out_questions(cells):
    records = []
    for seed, cfg, folder in cells:
        key = {"part": "path-star", "condition": "G2-3-N8", "objective": "mtp:3", "seed": seed}
        records += drafting_records(key, folder, cfg.task, DraftingSpec(prompts=5), threads=1)
    # 2 seeds x 5 prompts x (plain, draft 1, draft 2); the path after each question, as far as the model's
    # window (the training sequence) goes: its first 2 nodes, the goal (3rd) being past it
    assert len(records) == 2 * 5 * 3
    assert {(r["seed"], r["prompt"], r["draft"]) for r in records} == {
        (s, p, d) for s in (0, 1) for p in range(5) for d in (0, 1, 2)
    }
    assert all(r["tokens"] == 2 and r["same_as_plain"] for r in records)
    rows = drafting_rows(records)
    assert [(r["objective"], r["draft"], r["seeds"], r["prompts"]) for r in rows] == [
        ("mtp:3", d, 2, 10) for d in (0, 1, 2)
    ]
    for row in rows:  # the seeds pooled: sums over both seeds' prompts
        mine = [r for r in records if r["draft"] == row["draft"]]
        assert row["forwards"] == sum(r["forwards"] for r in mine)
        assert row["tokens_per_forward"]["value"] == pytest.approx(20 / row["forwards"])
    # the report: one text and one table, a row per draft length
    calls = []

    class Section:
        def text(self, s):
            calls.append(("text", s))

        def table(self, headers, rows, caption=""):
            calls.append(("table", headers, rows))

    drafting_section({"drafting": records}, Section())
    assert [c[0] for c in calls] == ["text", "table"] and len(calls[1][2]) == 3
    assert [row[3] for row in calls[1][2]] == ["plain", 1, 2] and all(row[-1] == "100%" for row in calls[1][2])
    drafting_section({}, Section())  # no drafting cell: nothing
    assert len(calls) == 2


def test_no_records_for_an_objective_without_heads(cells):
    seed, cfg, folder = cells[0]
    key = {"part": "path-star", "condition": "G2-3-N8", "objective": "ntp", "seed": seed}
    assert drafting_records(key, folder, cfg.task, DraftingSpec()) == []
    key["objective"] = "mtp:3"
    assert drafting_records(key, folder, cfg.task, DraftingSpec(enabled=False)) == []


def test_language_modelling_prompts_are_window_starts():
    class Words:
        def decode(self, ids):
            return " ".join(map(str, ids))

    class Text:  # loss everywhere: windows of a held-out stream
        def eval_batches(self, n_batches, batch_size):
            ids = torch.arange(batch_size * 40).reshape(batch_size, 40)  # (B, T)
            return [Batch(inputs={"input_ids": ids}, targets=ids, loss_mask=torch.ones(ids.shape))]

    prompts, new = held_out_prompts(Text(), Words(), 3, text_prompt=4, new_tokens=50)
    assert prompts == ["0 1 2 3", "40 41 42 43", "80 81 82 83"] and new == 50
    assert held_out_prompts(Text(), Words(), 3, text_prompt=4, new_tokens=50, window=32)[1] == 32 - 4 - 8

    class Questions:  # loss on the answers only (path-star, addition): the question is the prompt
        def eval_batches(self, n_batches, batch_size):
            ids = torch.arange(12).reshape(2, 6)  # (B, T)
            mask = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1]], dtype=torch.float)
            return [Batch(inputs={"input_ids": ids}, targets=ids, loss_mask=mask)]

    assert held_out_prompts(Questions(), Words(), 2, text_prompt=4, new_tokens=50) == (["0 1 2 3", "6 7 8"], 4)
    assert held_out_prompts(Questions(), Words(), 2, text_prompt=4, new_tokens=50, window=6)[1] == 2


RUN = [
    'parts=["path-star"]',
    "path_star.graphs=[{degree = 2, path_len = 3, n_nodes = 8}]",
    'path_star.objectives=["ntp", "mtp:2"]',
    "path_star.seeds=[0]",
    'path_star.task={name = "path-star", n_train = 64, n_test = 16}',
    "path_star.model_overrides={n_layer = 3}",
    "path_star.steps=4",
    "path_star.chunk=0",
    "path_star.eval_every=0",
    "path_star.batch_size=8",
    "drafting.prompts=4",
]


def test_the_experiment_measures_its_mtp_cells_and_reports_them(tmp_path):
    from myopia._io import read_parquet
    from myopia.runs import run

    out = tmp_path / "run"
    run("multi-token", RUN, out=out)
    records = read_parquet(out / "results" / "drafting.parquet")
    assert {r["objective"] for r in records} == {"mtp:2"}  # the ntp cell has no heads
    assert len(records) == 4 * 2 and all(r["same_as_plain"] for r in records)
    html = (out / "report.html").read_text()
    assert "Decoding with drafts on held-out prompts" in html
    off = tmp_path / "off"
    run("multi-token", RUN + ["drafting.enabled=false"], out=off)
    assert not (off / "results" / "drafting.parquet").exists()
    assert "Decoding with drafts on held-out prompts" not in (off / "report.html").read_text()

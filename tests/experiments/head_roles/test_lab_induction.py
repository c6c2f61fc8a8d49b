"""End to end: the induction recipe (examples/shakespeare_induction.toml, cut to 800 steps)
grows the circuit of seeds/003, and head-roles sees it. About 1-2 minutes on one core.

Measured here at 800 steps (seed 0): best block-1 induction 0.27 on repeated text; the top
block-0 previous-token head (L0H5, 0.61) worth 0.22 nats/byte to later positions against 0.06
at its own; the best induction head 0.41 at its own; 1.35 nats/byte on the second copy. At
750-1,000 steps of seeds 0 and 1 the same picture (README, head-roles). The bounds leave room
for another CPU's rounding."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from myopia._io import read_parquet
from myopia.lab import TrainConfig, train
from myopia.runs import run

RECIPE = Path(__file__).resolve().parents[3] / "examples" / "shakespeare_induction.toml"


def test_induction_recipe_grows_the_seed_003_circuit(tmp_path, shakespeare_cache):
    spec = tomllib.loads(RECIPE.read_text())
    spec.update(steps=800, checkpoint_every=0, eval_every=0, progress=False, out=str(tmp_path / "lab"))
    res = train(TrainConfig(**spec))
    run(
        "head-roles",
        [f'models=["lab:{res.out_dir}"]', 'data=["repeated-text"]', "sequences=8"],
        out=tmp_path / "hr",
    )
    rows = read_parquet(tmp_path / "hr" / "results" / "heads.parquet")
    block1 = [r for r in rows if r["layer"] == 1]
    assert max(r["induction"] for r in block1) > 0.2  # plain windows: ≤ 0.07
    prev = max((r for r in rows if r["layer"] == 0), key=lambda r: r["previous"])
    assert prev["previous"] > 0.35
    assert prev["d_future"] > 0.05 and prev["d_future"] > 1.5 * prev["d_own"]  # useful later, not here
    ind = max(block1, key=lambda r: r["induction"])
    assert ind["d_own"] > 0.05  # the induction head works at its own position
    summary = json.loads((tmp_path / "hr" / "summary.json").read_text())
    assert summary["models"][0]["data"]["repeated-text"]["clean_loss"] < 1.75  # no copying: ≈ 2.1

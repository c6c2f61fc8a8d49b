"""``myopia train`` (the lab)."""

from __future__ import annotations

import os

import click

from .._errors import UserError


@click.command()
@click.option("--task", "task", default=None,
              help="precache, precache-paper, path-star, path-star-paper, addition, shakespeare, "
              "shakespeare-names, text:PATH")
@click.option("--objective", default=None,
              help="ntp, myopic, myopic:hidden, mtp:N, mtp-seq:N, bigram, teacherless, reverse")
@click.option("--model", "model", default=None,
              help="a preset (llama-tiny ... gpt2-25m), hf:NAME, gguf:PATH or a bundled name")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="override a spec field (dotted path, TOML value); repeatable")
@click.option("--spec", "spec", default=None, type=click.Path(dir_okay=False),
              help="a TOML file with the spec (then flags and --set)")
@click.option("--out", default=None, help="output folder (default runs/train-TASK-OBJECTIVE-sSEED); reruns resume")
def train(task, objective, model, sets, spec, out) -> None:
    """Train a model under an objective (next-token, myopic, multi-token) on a task.

    \b
    Examples:
      myopia train --task precache --objective myopic --out runs/precache-myopic
      myopia train --task path-star --objective reverse --set steps=3000 --set batch_size=128
      myopia train --task shakespeare --model gpt2-2m --set task.seq_len=256 --out runs/shak
      torchrun --nproc_per_node=2 -m myopia train --task addition --out runs/add
    """
    from . import TrainConfig, apply_set
    from ._config import set_path, validate
    from ._train import train as run_train

    if spec:
        import tomllib

        try:
            with open(spec, "rb") as f:
                cfg = validate(tomllib.load(f))
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise UserError(f"cannot read spec {spec}: {e}") from None
    else:
        cfg = TrainConfig()
    if task:
        cfg = set_path(cfg, "task.name", task)
    if objective:
        cfg = set_path(cfg, "objective", objective)
    if model:
        cfg = set_path(cfg, "model.name", model)
    if out:
        cfg = set_path(cfg, "out", out)
    for s in sets:
        cfg = apply_set(cfg, s)
    result = run_train(cfg)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports
        return
    line = f"trained {result.steps} steps: loss {result.loss:.4f}"
    if result.eval_loss is not None:
        line += f", eval loss {result.eval_loss:.4f}"
    for k, v in result.metrics.items():
        line += f", {k} {v:.4f}"
    click.echo(line)
    click.echo(f"checkpoint: {result.out_dir}  (AutoModelForCausalLM.from_pretrained loads it)")

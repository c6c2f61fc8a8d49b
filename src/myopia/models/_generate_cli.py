"""``myopia generate``: continue a context, plainly or with drafts from the model's multi-token heads.

A command of its own: ``score`` scores given continuations, ``run`` runs experiments, ``train``
trains; none of them generates text, so decoding with drafts is not an option of any of them.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from .._errors import UserError


@click.command()
@click.argument("model")
@click.argument("context")
@click.option("--max-tokens", default=32, show_default=True, type=int, help="Tokens to generate.")
@click.option("--temperature", default=1.0, show_default=True, type=float, help="0 = greedy decoding.")
@click.option("--top-k", default=None, type=int, help="Sample among the k most probable tokens.")
@click.option("--top-p", default=None, type=float, help="Sample within the top-p probability mass.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("-n", "n", default=1, show_default=True, type=int, help="Number of continuations.")
@click.option("--chat", is_flag=True, help="Render CONTEXT with the model's chat template (tuned models).")
@click.option("--draft", default=0, show_default=True, type=int,
              help="Tokens drafted per forward pass by a lab model's mtp:N / mtp-seq:N heads (1..N-1) and "
                   "verified by the model: the same output (greedy) or distribution (sampling), fewer forward "
                   "passes. 0: plain decoding.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def generate(model: str, context: str, max_tokens: int, temperature: float, top_k: int | None,
             top_p: float | None, seed: int, n: int, chat: bool, draft: int, as_json: bool) -> None:
    """Continue CONTEXT with MODEL, plainly or decoding with drafts (--draft K).

    With --draft K a lab model trained with mtp:N or mtp-seq:N drafts K tokens with its extra
    heads and one forward pass of the model checks them (self-speculative decoding); the
    statistics line says how many tokens each forward pass produced and how often each head's
    draft was accepted.

    \b
    Examples:
      myopia generate lab:runs/shak-mtp4 "ROMEO:" --temperature 0 --max-tokens 64 --draft 3
      myopia generate gemma-3-270m "Once upon a time" --max-tokens 20 --seed 1
    """
    from ._base import Prompt, SamplingParams
    from ._load import load_model

    if n < 1:
        raise UserError(f"-n must be at least 1, got {n}")
    if draft < 0:
        raise UserError(f"--draft must be 0 (plain decoding) or a number of drafted tokens >= 1, got {draft}")
    params = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    if draft:
        check_spec_for_drafting(model, draft)  # before loading anything
    lm = load_model(model)
    prompt = Prompt(context, chat=chat)
    rows = []
    if draft:
        import torch

        from ._speculative import generate_with_drafts, load_drafter

        gen = torch.Generator(device="cpu").manual_seed(seed)
        drafter = load_drafter(lm)
        for _ in range(n):
            sample, stats = generate_with_drafts(lm, prompt, params, draft, gen, drafter)
            rows.append({"text": sample.text, "token_ids": sample.token_ids, "stats": _stats(stats)})
    else:
        rows = [{"text": s.text, "token_ids": s.token_ids} for s in lm.sample(prompt, n, params)]
    if as_json:
        out = {"model": model, "context": lm.render(prompt), "draft": draft, "samples": rows}
        click.echo(json.dumps(out, indent=2))
        return
    for row in rows:
        click.echo(row["text"])
        if "stats" in row:
            s = row["stats"]
            heads = ", ".join(f"{a}/{r}" for a, r in zip(s["accepted"], s["reached"]))
            click.echo(f"[{s['tokens']} tokens in {s['forwards']} forward passes: "
                       f"{s['tokens_per_forward']:.2f} per pass; drafts accepted/checked by head: {heads}]", err=True)


def _stats(stats) -> dict:
    return {"tokens": stats.tokens, "forwards": stats.forwards, "tokens_per_forward": stats.tokens_per_forward,
            "offered": stats.offered, "reached": stats.reached, "accepted": stats.accepted}


def check_spec_for_drafting(spec: str, draft: int) -> None:
    """Validate a model spec and a draft length before loading anything."""
    from ._load import parse_spec
    from ._speculative import check_draft, heads_info

    backend, arg = parse_spec(spec)
    if backend == "openai":
        raise UserError(f"decoding with drafts needs a lab: model with multi-token heads; {spec} is a black-box server")
    if backend != "lab":
        raise UserError(
            f"decoding with drafts needs a lab: model trained with mtp:N or mtp-seq:N; {spec} is a pretrained "
            "model without multi-token heads"
        )
    folder = Path(arg).expanduser()
    if not (folder / "config.json").is_file():
        raise UserError(f"lab model not found: {arg} has no config.json (is it a `myopia train` output dir?)")
    info = heads_info(folder, spec)
    check_draft(info.objective, info.n_heads, draft, spec)

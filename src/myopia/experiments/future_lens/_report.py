"""The future-lens report section: the headline table, the vanilla - myopic difference, the
figure (probe accuracy by layer, one line per offset, one panel per model) and the models and
data each cell read."""

from __future__ import annotations

from ...report import plt
from .._base import Tables
from ._spec import FutureLensSpec
from ._summary import FutureLensHeadline


def report(tables: Tables, spec: FutureLensSpec, summary: FutureLensHeadline, section) -> None:
    section.text(
        f"Linear probes from the residual stream at (layer, t) to the token at t+N, fit on the first "
        f"{spec.train_fraction:.0%} of {spec.text} (at most {spec.max_train_tokens} tokens) and evaluated on "
        f"the rest (at most {spec.max_eval_tokens}). Output space: the {spec.vocab} most frequent tokens of the "
        "training part plus one 'other' class; a target outside them always counts as a miss, and "
        "cross-entropy (nats) is over those classes (the model's own distribution collapsed onto them). "
        "bigram: the token at t+N from the token at t by counts on the same training text; unigram: the most "
        "frequent token; model: the model's own next-token prediction (N=1). trained:OBJ = a lab model "
        f"trained here ({spec.train.model} on {spec.train.task.get('name')}, {spec.train.steps} steps) with that "
        "objective. Layer 0 = the embeddings."
    )
    section.table(*summary.table(), caption="Best probe per model and offset (top-1 accuracy on held-out text)")
    if summary.vanilla_minus_myopic is not None:
        section.table(
            ["offset", "vanilla − myopic (best probe accuracy)"],
            [[f"t+{n}", d] for n, d in summary.vanilla_minus_myopic.items()],
            caption="Do vanilla models encode more of the future than myopic ones?",
        )
    if tables.get("probes"):
        section.figure(
            accuracy_figure(tables["probes"], tables.get("baselines", []), spec.models),
            caption="Probe accuracy by layer, one line per offset; dashed: bigram baseline of that offset, "
            "dotted grey: unigram, black: the model's own next-token accuracy",
        )
    info = tables.get("info", [])
    if info:
        section.table(
            ["model", "layers", "d", "probed", "train tok", "eval tok", "coverage (eval)", "seconds"],
            [[r["model"], r["n_layers"], r["d_model"], r["layers_probed"], r["train_tokens"], r["eval_tokens"],
              r["coverage_eval"], round(r["seconds"])] for r in info],
            caption="Models and data: coverage = share of eval targets inside the kept tokens (the ceiling of "
            "every accuracy); seconds = hidden states + probes (without training)",
        )


def accuracy_figure(probes: list[dict], baselines: list[dict], models: list[str]):
    names = [m for m in models if any(r["model"] == m for r in probes)]
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.6 * rows), squeeze=False, sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, m in enumerate(names):
        ax = axes[i // cols][i % cols]
        recs = [r for r in probes if r["model"] == m]
        base = [r for r in baselines if r["model"] == m]
        for j, n in enumerate(sorted({r["offset"] for r in recs})):
            c = colors[j % len(colors)]
            pts = sorted((r["layer"], r["accuracy"]) for r in recs if r["offset"] == n)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, color=c, label=f"t+{n}")
            for r in base:
                if r["offset"] == n and r["kind"] == "bigram":
                    ax.axhline(r["accuracy"], color=c, ls="--", lw=1)
        uni = [r["accuracy"] for r in base if r["kind"] == "unigram" and r["offset"] == 1]
        if uni:
            ax.axhline(uni[0], color="grey", ls=":", lw=1.2, label="unigram")
        own = [r["accuracy"] for r in base if r["kind"] == "model"]
        if own:
            ax.axhline(own[0], color="black", lw=1, label="model (t+1)")
        ax.set_title(m, fontsize=9)
        ax.set_xlabel("layer (0 = embeddings)")
        ax.set_ylabel("top-1 accuracy")
        ax.legend(fontsize=7)
    for k in range(len(names), rows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.tight_layout()
    return fig

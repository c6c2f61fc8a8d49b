"""The future-lens report section: the headline table, every reader's best layer and
cross-entropy, the vanilla - myopic difference per reader, the figure (accuracy by layer: one row
of panels per model, one panel per reader, one line per offset, baselines as horizontal lines)
and the models and data each cell read."""

from __future__ import annotations

from matplotlib.ticker import MaxNLocator

from ...report import plt
from .._base import Tables
from ._spec import METHODS, FutureLensSpec
from ._summary import FutureLensHeadline, method_of


def report(tables: Tables, spec: FutureLensSpec, summary: FutureLensHeadline, section) -> None:
    section.text(
        f"Readers from the residual stream at (layer, t) to the token at t+N, fit on the first "
        f"{spec.train_fraction:.0%} of {spec.text} (at most {spec.max_train_tokens} tokens) and evaluated on "
        f"the rest (at most {spec.max_eval_tokens}). linear: a linear probe to the classes; future-state: a linear "
        "map to the model's last-layer state at t+N-1, decoded by the model's final norm and unembedding; "
        f"transplant: the state put into the last position of the fixed context {spec.transplant_context!r} at the "
        "same layer, the model run on (greedy for N > 1); learned-prompt: the same with soft prompt vectors trained "
        "per layer in place of the context and of the decoded tokens (at the last layer t+1 only: the state reaches "
        f"no later position). The last three read at most {spec.model_layers} of the layers. Output space: the "
        f"{spec.vocab} most frequent tokens of the training part plus one 'other' class; a target outside them "
        "always counts as a miss; a full-vocabulary distribution (the model's own, the last three readers') is "
        "collapsed onto them ('other' takes the rest of the mass) and its prediction is its most probable kept "
        "token; cross-entropy (nats) is over those classes. bigram: the token at t+N from the token at t by counts "
        "on the same training text; unigram: the most frequent token; model: the model's own next-token "
        f"prediction (N=1). trained:OBJ = a lab model trained here ({spec.train.model} on "
        f"{spec.train.task.get('name')}, {spec.train.steps} steps) with that objective. Layer 0 = the embeddings."
    )
    section.table(*summary.table(), caption="Best accuracy of each reader per model and offset (held-out top-1)")
    detail = [
        [m, f"t+{n}", method, f.best_layer, f.best_accuracy, f.best_cross_entropy]
        for m, s in summary.models.items()
        for n, o in s.offsets.items()
        for method, f in o.methods.items()
    ]
    if detail:
        section.table(
            ["model", "offset", "reader", "best layer", "accuracy", "lowest CE"],
            detail,
            caption="Every reader: its most accurate layer, and its lowest held-out cross-entropy over layers",
        )
    if summary.vanilla_minus_myopic is not None:
        methods = list(summary.vanilla_minus_myopic)
        offsets = sorted({n for d in summary.vanilla_minus_myopic.values() for n in d}, key=int)
        section.table(
            ["offset", *methods],
            [[f"t+{n}", *[summary.vanilla_minus_myopic[m].get(n) for m in methods]] for n in offsets],
            caption="Vanilla − myopic lab model, best accuracy per reader: "
            "do vanilla models encode more of the future than myopic ones?",
        )
    if tables.get("probes"):
        section.figure(
            accuracy_figure(tables["probes"], tables.get("baselines", []), spec.models),
            caption="Accuracy by layer: one row per model, one panel per reader, one line per offset; dashed: "
            "bigram baseline of that offset, dotted grey: unigram, black: the model's own next-token accuracy",
        )
    info = tables.get("info", [])
    if info:
        section.table(
            ["model", "layers", "d", "read", "train tok", "eval tok", "coverage (eval)", "seconds",
             *[f"s {m}" for m in METHODS]],
            [[r["model"], r["n_layers"], r["d_model"], r["layers_probed"], r["train_tokens"], r["eval_tokens"],
              r["coverage_eval"], round(r["seconds"]),
              *[None if r.get(f"seconds_{m}") is None else round(r[f"seconds_{m}"]) for m in METHODS]]
             for r in info],
            caption="Models and data: coverage = share of eval targets inside the kept tokens (the ceiling of "
            "every accuracy); seconds = hidden states + readers (without training the lab models), then each "
            "reader's share",
        )


def accuracy_figure(probes: list[dict], baselines: list[dict], models: list[str]):
    names = [m for m in models if any(r["model"] == m for r in probes)]
    methods = [k for k in METHODS if any(method_of(r) == k for r in probes)]
    rows, cols = len(names), len(methods)
    fig, axes = plt.subplots(rows, cols, figsize=(3.8 * cols, 3.2 * rows), squeeze=False, sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, m in enumerate(names):
        base = [r for r in baselines if r["model"] == m]
        n_layers = max(r["layer"] for r in probes if r["model"] == m)
        for j, method in enumerate(methods):
            ax = axes[i][j]
            recs = [r for r in probes if r["model"] == m and method_of(r) == method]
            for k, n in enumerate(sorted({r["offset"] for r in recs})):
                c = colors[k % len(colors)]
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
            ax.set_xlim(-0.5, n_layers + 0.5)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_title(f"{m}: {method}", fontsize=9)
            ax.set_xlabel("layer (0 = embeddings)")
            if j == 0:
                ax.set_ylabel("top-1 accuracy")
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    return fig

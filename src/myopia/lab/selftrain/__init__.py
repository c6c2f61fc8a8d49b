"""Self-training: rounds of sampling from a model, selecting or rewarding its own completions, and
fine-tuning on them (``top-k`` by joint log-prob, ``random-k``, ``reward-k``, ``rl`` with RLOO)."""

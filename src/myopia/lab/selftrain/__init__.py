"""Self-training: rounds of sampling from a model, selecting or rewarding its own completions, and
fine-tuning on them (``top-k`` by joint log-prob, ``random-k``, ``reward-k``, ``rl`` with RLOO and a
KL penalty to the frozen base). See ``_rounds`` for the round, ``_rloo`` for the estimator."""

from ._measures import distinct_n, ends_in_repetition, game_measures, sample_measures, seq_rep, text_measures
from ._rewards import BUILTIN as REWARDS
from ._rewards import Reward, Rollout, check_reward, get_reward
from ._rloo import rloo_advantages, rloo_loss, sequence_logprobs
from ._rounds import SelfTrainConfig, SelfTraining, generator
from ._sampling import Completions, beam, sample
from ._select import CONDITIONS, select

__all__ = [
    "CONDITIONS",
    "Completions",
    "REWARDS",
    "Reward",
    "Rollout",
    "SelfTrainConfig",
    "SelfTraining",
    "beam",
    "check_reward",
    "distinct_n",
    "ends_in_repetition",
    "game_measures",
    "generator",
    "get_reward",
    "rloo_advantages",
    "rloo_loss",
    "sample",
    "sample_measures",
    "select",
    "seq_rep",
    "sequence_logprobs",
    "text_measures",
]

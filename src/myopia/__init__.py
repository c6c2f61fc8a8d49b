"""myopia: a laboratory for how far ahead autoregressive language models look.

The central nouns:

- :class:`LanguageModel` (``load_model("gemma-3-270m")``, ``"hf:…"``, ``"gguf:…"``,
  ``"lab:…"``, ``"openai:…"``): ``score``, ``next_token_logprobs``, ``sample``;
- :class:`Experiment`, registered by name, with a typed spec and a typed headline, run into a
  directory by :func:`run` (:mod:`myopia.runs`) and summarised in a :class:`Report`;
- objectives (``ntp``, ``myopic``, ``mtp:n`` …) and tasks for the lab (``myopia.lab``).

Importing myopia registers the ``myopic``, ``myopic:hidden`` and ``bigram`` attention
implementations with ``transformers``, so
``AutoModelForCausalLM.from_pretrained(path, attn_implementation="myopic")`` works.
"""

from . import objectives  # noqa: F401  (registers the attention implementations)
from ._errors import UserError
from .experiments import Experiment, Headline, Spec, experiment_names, get_experiment
from .models import LanguageModel, Prompt, SamplingParams, ScoredContinuation, WhiteBoxModel, load_model
from .report import Report, Section
from .runs import rerender, run

__all__ = [
    "Experiment",
    "Headline",
    "LanguageModel",
    "Prompt",
    "Report",
    "SamplingParams",
    "ScoredContinuation",
    "Section",
    "Spec",
    "UserError",
    "WhiteBoxModel",
    "experiment_names",
    "get_experiment",
    "load_model",
    "rerender",
    "run",
]
__version__ = "0.1.0"

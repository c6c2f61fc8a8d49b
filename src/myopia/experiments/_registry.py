"""The registry: every experiment, named once. ``myopia run NAME`` and a spec's ``experiment``
field take these names; the quick suite runs those that declare ``quick`` overrides."""

from __future__ import annotations

from .._errors import UserError
from ._base import Experiment
from .forced_choice import ForcedChoice
from .future_lens import FutureLens
from .gradient_horizon import GradientHorizon
from .head_roles import HeadRoles
from .mode_collapse import ModeCollapse
from .multi_token import MultiTokenExperiment
from .myopia_gap import MyopiaGap
from .self_training import SelfTrainingExperiment
from .sequence_likelihood import SequenceLikelihood

EXPERIMENTS: dict[str, type[Experiment]] = {
    "sequence-likelihood": SequenceLikelihood,
    "myopia-gap": MyopiaGap,
    "gradient-horizon": GradientHorizon,
    "future-lens": FutureLens,
    "forced-choice": ForcedChoice,
    "mode-collapse": ModeCollapse,
    "head-roles": HeadRoles,
    "multi-token": MultiTokenExperiment,
    "self-training": SelfTrainingExperiment,
}

for _name, _cls in EXPERIMENTS.items():
    _cls.name = _name
    _cls.spec_cls.experiment_name = _name


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise UserError(f"unknown experiment {name!r}; known: {', '.join(sorted(EXPERIMENTS))}")
    return EXPERIMENTS[name]()


def experiment_names() -> list[str]:
    return sorted(EXPERIMENTS)

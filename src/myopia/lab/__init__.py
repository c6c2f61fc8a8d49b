"""The lab: train small ``transformers`` models (or fine-tune pretrained ones) under an
objective on a task; the result is an ordinary Hugging Face checkpoint.

    from myopia.lab import TrainConfig, train
    result = train(TrainConfig(task="precache", objective="myopic", out="runs/p"))
"""

from ._checkpoint import latest_checkpoint, read_log
from ._config import ModelSpec, TrainConfig, apply_set, lr_at
from ._models import build_config, build_model, count_parameters
from ._presets import SHAPES, is_preset, presets
from ._setting import TrainSetting, over_defaults, train_cell, train_config, train_device
from ._train import Dist, Run, TrainResult, make_optimizer, train, train_step

__all__ = [
    "Dist",
    "ModelSpec",
    "Run",
    "SHAPES",
    "TrainConfig",
    "TrainResult",
    "apply_set",
    "build_config",
    "build_model",
    "count_parameters",
    "TrainSetting",
    "is_preset",
    "latest_checkpoint",
    "lr_at",
    "make_optimizer",
    "over_defaults",
    "presets",
    "read_log",
    "train_cell",
    "train_config",
    "train_device",
    "train",
    "train_step",
]

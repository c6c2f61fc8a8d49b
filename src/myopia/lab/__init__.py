"""The lab: train small ``transformers`` models (or fine-tune pretrained ones) under an
objective on a task; the result is an ordinary Hugging Face checkpoint.

    from myopia.lab import TrainConfig, train
    result = train(TrainConfig(task="precache", objective="myopic", out="runs/p"))
"""

from ._checkpoint import latest_checkpoint
from ._config import ModelSpec, TrainConfig, apply_set, lr_at, parse_value, set_path
from ._models import SHAPES, build_config, build_model, count_parameters, presets
from ._train import TrainResult, make_optimizer, train, train_step

__all__ = [
    "ModelSpec",
    "SHAPES",
    "TrainConfig",
    "TrainResult",
    "apply_set",
    "build_config",
    "build_model",
    "count_parameters",
    "latest_checkpoint",
    "lr_at",
    "make_optimizer",
    "parse_value",
    "presets",
    "set_path",
    "train",
    "train_step",
]

"""Model registry, architectures, checkpoint and ONNX loading. Importing registers every architecture."""

from . import cifar_resnet, digits, families, vgg  # noqa: F401  (registration side effects)
from .registry import ModelCfg, create_model, list_models, model_cfg, register_model
from .loading import LoadedModel, Normalize, load_model

__all__ = ["ModelCfg", "create_model", "list_models", "model_cfg", "register_model",
           "LoadedModel", "Normalize", "load_model"]

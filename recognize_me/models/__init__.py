"""Model definitions (pure Keras; no Prefect): the builders of the model ladder, its layers and losses.

Which models exist, and how each is trained, is declared in ``recognize_me.catalog``. Importing this
package registers the custom serialisable classes (``recognize_me>ResidualUnit``,
``recognize_me>WeightedBinaryCrossentropy``, ``recognize_me>VGGPreprocessing``,
``recognize_me>RelationalCosineLoss``) so saved ``.keras``
files load with ``keras.models.load_model(path, safe_mode=True)``.
"""

from recognize_me.models.builders import ModelBuilder, ModelSpec, count_params, get_model_spec
from recognize_me.models.distill import RelationalCosineLoss
from recognize_me.models.losses import WeightedBinaryCrossentropy, positive_weights, with_positive_weights
from recognize_me.models.options import BuildOptions
from recognize_me.models.residual import ResidualUnit
from recognize_me.models.vgg import VGGPreprocessing

__all__ = [
    "BuildOptions",
    "ModelBuilder",
    "ModelSpec",
    "RelationalCosineLoss",
    "ResidualUnit",
    "VGGPreprocessing",
    "WeightedBinaryCrossentropy",
    "count_params",
    "get_model_spec",
    "positive_weights",
    "with_positive_weights",
]

"""Teacher-student distillation: a TensorFlow student that reproduces a face-recognition teacher's embedding.

The teacher (dlib's face-recognition ResNet, the optional ``reference`` extra) embeds CelebA images once;
the student (the pipeline's residual trunk with an ``"embedding"`` head, so feature extraction reads it
like ``resnet_identity``'s) learns to map the same image to the same direction. The student then needs no
dlib when it predicts.

``RelationalCosineLoss`` = ``1 - cos(student, teacher)`` per image, plus ``relation_weight`` times the mean
squared difference between the batch's student-student and teacher-teacher cosine similarities (relational
knowledge distillation, Park et al., CVPR 2019): it asks for the teacher's *distances between people*,
which is what "is this me?" reads. On issue 19's rotation it measured level with weight 0
(benchmarks/README.md, ``teacher_student``); what mattered there was centring the targets. Both inputs are
L2-normalised inside the loss, so any length of target works.

Registered, so a student loads with ``keras.models.load_model(path, safe_mode=True)``.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from recognize_me.models.builders import resnet_trunk
from recognize_me.models.identity import embedding_head


@keras.saving.register_keras_serializable(package="recognize_me")
class RelationalCosineLoss(keras.losses.Loss):
    """Per-image ``1 - cos(s_i, t_i) + w * mean_j (cos(s_i, s_j) - cos(t_i, t_j))^2`` over the batch."""

    def __init__(self, relation_weight: float = 1.0, name: str = "relational_cosine", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        if relation_weight < 0:
            raise ValueError(f"relation_weight must be >= 0, got {relation_weight}")
        self.relation_weight = float(relation_weight)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        t, s = ops.normalize(ops.cast(y_true, "float32")), ops.normalize(ops.cast(y_pred, "float32"))
        direction = 1.0 - ops.sum(t * s, axis=-1)
        relation = ops.mean(ops.square(ops.matmul(s, ops.transpose(s)) - ops.matmul(t, ops.transpose(t))), axis=-1)
        return direction + self.relation_weight * relation

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "relation_weight": self.relation_weight}


def build_embedding_student(input_shape: tuple[int, int, int], dim: int = 128) -> keras.Model:
    """Image in [0, 1] -> unit-length ``dim``-d ``"embedding"``: the ResNet trunk, ``"gap"``, the embedding head."""
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"input_shape must be (height, width, 3), got {input_shape}")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(resnet_trunk(inputs))
    return keras.Model(inputs, embedding_head(pooled, dim), name="embedding_student")

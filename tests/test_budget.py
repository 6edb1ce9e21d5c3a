"""Time budget (training.callbacks.TimeBudget, training.plan.pack_budget), precision policy (bf16 trains and
round-trips .keras with safe_mode=True). Time is a fake clock advanced per epoch: no sleeps, no timing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from recognize_me.config import PipelineConfig  # noqa: E402
from recognize_me.training.budget import EpochPlan  # noqa: E402
from recognize_me.training.callbacks import TimeBudget  # noqa: E402
from recognize_me.training.plan import JOB_OVERHEAD_S, budget_weight, pack_budget, plan_jobs  # noqa: E402
from recognize_me.training.precision import resolve_precision  # noqa: E402


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Tick(keras.callbacks.Callback):
    """Before TimeBudget: each epoch 'takes' ``seconds``; optionally overrides val_loss per epoch."""

    def __init__(self, clock: Clock, seconds: float, val_losses: list[float] | None = None) -> None:
        super().__init__()
        self.clock, self.seconds, self.val_losses, self.weights = clock, seconds, val_losses, []

    def on_epoch_end(self, epoch, logs=None):
        self.clock.now += self.seconds
        if self.val_losses is not None:
            logs["val_loss"] = self.val_losses[epoch]
        self.weights.append([w.copy() for w in self.model.get_weights()])


def _tiny_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="sigmoid")(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="binary_crossentropy")
    return model


def _fit(plan: EpochPlan, seconds: float, val_losses=None, epochs: int | None = None):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.integers(0, 2, (32, 2)).astype("float32")
    clock = Clock()
    tick = Tick(clock, seconds, val_losses)
    model = _tiny_model()
    history = model.fit(x, y, validation_data=(x, y), epochs=epochs or plan.max_epochs, verbose=0,
                        callbacks=[tick, TimeBudget(plan, 0.0, eval_factor=0.0, clock=clock)])
    return model, history, tick


def test_budget_plans_from_the_first_epoch_and_stops_within_it() -> None:
    plan = EpochPlan(max_epochs=20, budget_s=35.0)
    _, history, _ = _fit(plan, seconds=10.0)
    assert len(history.epoch) == 3 == plan.planned_steps == plan.epochs  # 3 x 10 s <= 35 s < 4 x 10 s
    assert plan.stopped_by_budget


def test_max_epochs_ends_a_generous_budget_and_no_budget_changes_nothing() -> None:
    plan = EpochPlan(max_epochs=4, budget_s=1000.0)
    _, history, _ = _fit(plan, seconds=10.0)
    assert len(history.epoch) == 4 and plan.epochs == 4 and not plan.stopped_by_budget
    unbudgeted = EpochPlan(max_epochs=3)
    _, history, _ = _fit(unbudgeted, seconds=100.0)
    assert len(history.epoch) == 3 and unbudgeted.planned_steps is None and not unbudgeted.stopped_by_budget


def test_a_faster_machine_plans_more_epochs() -> None:
    slow, fast = EpochPlan(max_epochs=50, budget_s=60.0), EpochPlan(max_epochs=50, budget_s=60.0)
    _fit(slow, seconds=20.0)
    _fit(fast, seconds=5.0)
    assert (slow.epochs, fast.epochs) == (3, 12)


def test_best_epoch_weights_are_restored() -> None:
    plan = EpochPlan(max_epochs=4, budget_s=1000.0)
    model, _, tick = _fit(plan, seconds=1.0, val_losses=[3.0, 1.0, 2.0, 4.0])
    for got, want in zip(model.get_weights(), tick.weights[1], strict=True):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(model.get_weights()[0], tick.weights[3][0])


def test_evaluation_reserve_counts_against_the_budget() -> None:
    plan = EpochPlan(max_epochs=20, budget_s=35.0)
    plan.bind(1)  # one step per epoch
    plan.steps_done = 1
    budget = TimeBudget(plan, 0.0, eval_factor=2.0)
    budget.step_s, budget.val_s = [10.0], 5.0  # 10 s steps, 5 s validations, the evaluation reserve 2 x 5 s
    assert budget.plan_steps(10.0) == 2  # 10 + 10 + 5 + 10 (reserve) <= 35; a third step would not fit


def test_pack_budget_fits_every_worker_and_orders_by_start() -> None:
    weights = {m: budget_weight(m, "none") for m in
               ("baseline_cnn", "cnn_scheduled", "cnn_thresholded", "resnet", "vgg16_finetune")}
    assert weights["vgg16_finetune"] < weights["baseline_cnn"] < weights["resnet"] == 1.0
    assert budget_weight("vgg16_finetune", "imagenet") == 1.0
    slots = pack_budget(weights, 3600.0, 2)
    assert sorted(s.name for s in slots) == sorted(weights)
    for worker in {s.worker for s in slots}:
        mine = [s for s in slots if s.worker == worker]
        assert sum(s.budget_s + JOB_OVERHEAD_S for s in mine) == pytest.approx(3600.0)
        assert all(a.start_s + a.budget_s + JOB_OVERHEAD_S == pytest.approx(b.start_s)
                   for a, b in zip(mine, mine[1:], strict=False))
    assert [s.start_s for s in slots] == sorted(s.start_s for s in slots)
    by_name = {s.name: s for s in slots}
    assert by_name["vgg16_finetune"].budget_s < min(by_name[m].budget_s for m in weights if m != "vgg16_finetune")
    # list scheduling of the slots in this order onto 2 workers ends by the budget
    free = [0.0, 0.0]
    for s in slots:
        k = free.index(min(free))
        free[k] += s.budget_s + JOB_OVERHEAD_S
    assert max(free) <= 3600.0 + 1e-6
    one = pack_budget(weights, 600.0, 1)
    assert sum(s.budget_s + JOB_OVERHEAD_S for s in one) == pytest.approx(600.0)


def test_plan_jobs_carries_budget_precision_and_decoded(tmp_path: Path) -> None:
    config = PipelineConfig(celeba_dir=tmp_path, models=["baseline_cnn", "vgg16_finetune", "resnet"],
                            time_budget_min=10, precision="mixed_bfloat16")
    jobs = plan_jobs(config, tmp_path, tmp_path / "splits.csv", tmp_path, "fp", threads=1, n_workers=2,
                     decoded=tmp_path / "dec")
    assert {j.model for j in jobs} == {"baseline_cnn", "vgg16_finetune", "resnet"}
    assert all(j.budget_s and j.precision == "mixed_bfloat16" and j.decoded == tmp_path / "dec" for j in jobs)
    assert jobs[-1].model == "vgg16_finetune"  # the smallest share starts last
    plain = plan_jobs(config.model_copy(update={"time_budget_min": None}), tmp_path, tmp_path / "s.csv",
                      tmp_path, "fp", threads=1)
    assert [j.model for j in plain] == config.models and all(j.budget_s is None for j in plain)
    # where the decoded array lives is not part of what the model depends on; the budget is
    import dataclasses

    (tmp_path / "s.csv").write_text("image_id,split\n")
    job = plain[0]
    assert dataclasses.replace(job, decoded=tmp_path / "x").cache_key() == job.cache_key()
    assert dataclasses.replace(job, budget_s=60.0).cache_key() != job.cache_key()


def test_resolve_precision_by_device() -> None:
    assert resolve_precision("auto", gpus=1, flags=set()) == "mixed_float16"
    assert resolve_precision("auto", gpus=0, flags={"amx_bf16", "avx2"}) == "mixed_bfloat16"
    assert resolve_precision("auto", gpus=0, flags={"avx512_bf16"}) == "mixed_bfloat16"
    assert resolve_precision("auto", gpus=0, flags={"avx2"}) == "float32"
    assert resolve_precision("float32", gpus=1) == "float32"
    with pytest.raises(ValueError, match="bfloat"):
        resolve_precision("bf16")


@pytest.mark.parametrize("name", ["baseline_cnn", pytest.param("vgg16_finetune", marks=pytest.mark.slow)])
def test_bfloat16_model_trains_and_round_trips_keras_safe_mode(tmp_path: Path, name: str) -> None:
    from recognize_me.models import BuildOptions, get_model_spec

    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        keras.utils.set_random_seed(0)
        model = get_model_spec(name).build((32, 32, 3), 3, BuildOptions(seed=0))
        assert model.get_layer("attributes").dtype_policy.name == "float32"
        assert model.get_layer("gap").compute_dtype == "bfloat16"
        rng = np.random.default_rng(0)
        x, y = rng.random((16, 32, 32, 3), dtype=np.float32), rng.integers(0, 2, (16, 3)).astype("float32")
        history = model.fit(x, y, epochs=1, batch_size=8, verbose=0)
        assert np.isfinite(history.history["loss"][0])
        scores = model.predict(x, verbose=0)
        assert scores.dtype == np.float32
        path = tmp_path / f"{name}.keras"
        model.save(path)
        loaded = keras.models.load_model(path, safe_mode=True)
        assert loaded.get_layer("gap").compute_dtype == "bfloat16"
        np.testing.assert_allclose(loaded.predict(x, verbose=0), scores, rtol=0, atol=1e-6)
    finally:
        keras.mixed_precision.set_global_policy(previous)


@pytest.mark.parametrize("name", ["resnet", "resnet_identity"])
def test_bfloat16_residual_model_loads_and_predicts_in_a_float32_process(tmp_path: Path, name: str) -> None:
    """Transfer and predict load a bf16-trained base under the float32 policy: every ResidualUnit sub-layer
    must follow the unit's saved policy (else ``x + skip`` adds bfloat16 to float32)."""
    from recognize_me.models import BuildOptions, get_model_spec

    previous = keras.mixed_precision.global_policy().name
    x = np.random.default_rng(1).random((4, 32, 32, 3), dtype=np.float32)
    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        keras.utils.set_random_seed(0)
        model = get_model_spec(name).build((32, 32, 3), 3, BuildOptions(seed=0))
        scores = _attributes(model(x, training=False))  # eager: the same layers, no predict graph to trace
        model.save(tmp_path / "m.keras")
        keras.mixed_precision.set_global_policy("float32")
        loaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
        np.testing.assert_allclose(_attributes(loaded(x, training=False)), scores, rtol=0, atol=1e-6)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _attributes(outputs) -> np.ndarray:
    """The attribute scores of a model's outputs (the identity model also returns its embedding)."""
    outputs = outputs["attributes"] if isinstance(outputs, dict) else outputs
    return keras.ops.convert_to_numpy(outputs)


@pytest.mark.slow
def test_budgeted_train_one_stops_by_budget_and_says_so(tmp_path: Path) -> None:
    from celeba_fixtures import JOB_ATTRIBUTES, write_training_job

    from recognize_me.data.decoded_cache import decode_splits
    from recognize_me.training.train import TrainJob, train_one

    splits_csv, images = write_training_job(tmp_path / "data", n=60)
    decoded, _ = decode_splits(splits_csv, tmp_path / "cache", "fp", images, (32, 32), "none")
    common = dict(run_dir=tmp_path / "run", splits_csv=splits_csv, images_dir=images, attributes=JOB_ATTRIBUTES,
                  image_size=(32, 32), crop="none", batch_size=16, threads=1, decoded=decoded,
                  precision="mixed_bfloat16")
    # a budget used up before training starts: one step (of 3 per epoch) runs, the plan says so, and why
    summary = train_one(TrainJob(model="cnn_scheduled", epochs=6, budget_s=0.001, **common))
    assert (summary["epochs_run"], summary["epochs_planned"], summary["stopped_by_budget"]) == (0.33, 0.33, True)
    assert (summary["steps_run"], summary["steps_per_epoch"], summary["sub_epoch_steps"]) == (1, 3, 3)
    assert summary["input"] == "decoded array" and summary["precision"] == "mixed_bfloat16"
    maps = Path("/proc/self/maps")  # rows were read by positional reads: the array was never mapped
    assert not maps.exists() or str(decoded / "images.npy") not in maps.read_text()
    written = json.loads((tmp_path / "run" / "models" / "cnn_scheduled" / "metrics.json").read_text())
    assert written["stopped_by_budget"] is True and written["max_epochs"] == 6
    keras.models.load_model(tmp_path / "run" / "models" / "cnn_scheduled" / "model.keras", safe_mode=True)
    # the two-phase model under a generous budget: max epochs over both phases, not stopped by the budget
    vgg = train_one(TrainJob(model="vgg16_finetune", epochs=2, budget_s=3600.0, **common))
    assert (vgg["epochs_run"], vgg["epochs_planned"], vgg["stopped_by_budget"]) == (2, 2, False)
    assert vgg["step_s_measured"] > 0
    assert vgg["trained_from_scratch"] is True
    history = json.loads(json.dumps(
        __import__("pandas").read_csv(tmp_path / "run" / "models" / "vgg16_finetune" / "history.csv")["phase"]
        .tolist()))
    assert history == [1, 2]


def test_report_notes_say_budget_stops_overruns_and_vgg_from_scratch() -> None:
    from recognize_me.evaluation.report import LEADERBOARD_COLUMNS, training_notes

    assert {"epochs_run", "epochs_planned", "stopped_by_budget"} <= set(LEADERBOARD_COLUMNS)
    notes = training_notes([
        {"model": "resnet", "stopped_by_budget": True, "budget_s": 100.0, "epochs_run": 1, "max_epochs": 9,
         "train_time_s": 250.0},
        {"model": "cnn_scheduled", "stopped_by_budget": True, "budget_s": 100.0, "epochs_run": 4,
         "max_epochs": 9, "train_time_s": 90.0},
        {"model": "vgg16_finetune", "trained_from_scratch": True},
        {"model": "baseline_cnn", "stopped_by_budget": False}])
    assert len(notes) == 4
    assert "resnet: stopped by the time budget (100.0 s) after 1 of at most 9 epochs" in notes[0]
    assert notes[1].startswith("resnet: its training (250.0 s) overran")
    assert notes[2].startswith("cnn_scheduled: stopped by the time budget")
    assert "trained from scratch" in notes[3] and "--vgg-weights" in notes[3]

"""Checkpoint and resume: exact on every backend, atomic, refusing what does not belong to the run."""


import keras
import numpy as np
import pytest

from keras_pretrain.checkpoints import Checkpoint, CheckpointError, ClassifierStore, Diverged, RunRecord
from keras_pretrain.evaluation import EvaluationConfig
from keras_pretrain.pipelines import (
    BertConfig,
    ImageDataConfig,
    ImagePipeline,
    ImagePipelineConfig,
    PretrainConfig,
    TextDataConfig,
    TextPipeline,
    TextPipelineConfig,
    TokenizerConfig,
)
from keras_pretrain.models import ImageClassifier, ViTEncoder
from keras_pretrain.pipelines.images import MaeConfig, ViTConfig
from tests.conftest import write_image_folder, write_labelled_csv


class AtStep(keras.callbacks.Callback):
    """Calls `act()` once, after `step` training steps."""

    def __init__(self, step):
        super().__init__()
        self.step, self.seen = step, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.step:
            self.act()


class StopAt(AtStep):
    """Raises inside `fit` after `step` steps, as a crash or a kill would stop it (Keras's own tests do the same)."""

    def act(self):
        raise KeyboardInterrupt(f"stopped at step {self.step}")


def tiny_config(tmp_path, folder, name, **pretrain):
    return ImagePipelineConfig(
        name="tiny", data=ImageDataConfig(labelled=str(folder)),
        encoder=ViTConfig(hidden_dim=16, depth=1, num_heads=2), mae=MaeConfig(decoder_dim=16),
        pretrain=PretrainConfig(**{"steps": 10, "batch_size": 8, "checkpoint_every": 3, **pretrain}),
        evaluation=EvaluationConfig(labels_per_class=2, val_per_class=2, finetune_epochs=1, curve_labels_per_class=[]),
        output_dir=str(tmp_path / name),
    )


def pretrained_weights(pipeline):
    data = pipeline.load_data()
    pipeline.output_dir.mkdir(parents=True, exist_ok=True)
    encoder, results = pipeline.pretrain(data)
    return [np.asarray(w) for w in encoder.get_weights()], results


@pytest.fixture
def folder(tmp_path):
    return write_image_folder(tmp_path / "shapes", per_class=14)


def test_a_run_stopped_mid_epoch_resumes_to_the_same_weights(tmp_path, folder):
    # 20 pre-training images in batches of 8: epochs of 2 steps, 10 steps in all. Checkpoints every 3 steps:
    # stopped during step 4, the last one is step 3, in the middle of the second epoch.
    uninterrupted, _ = pretrained_weights(ImagePipeline(tiny_config(tmp_path, folder, "straight"), verbose=0))
    stopped = ImagePipeline(tiny_config(tmp_path, folder, "resumed"), verbose=0, callbacks=[StopAt(4)])
    with pytest.raises(KeyboardInterrupt):
        pretrained_weights(stopped)
    assert stopped.checkpoint.step() == 3
    resumed = ImagePipeline(tiny_config(tmp_path, folder, "resumed"), verbose=0)
    assert resumed.resume_point() == f"pre-training checkpoint at step 3 in {tmp_path / 'resumed' / 'checkpoint'}"
    weights, results = pretrained_weights(resumed)
    assert results["pretrain_steps"] == 10
    # The speed is that of the steps this run trained: 7 steps of 8 images, not the whole schedule's.
    assert results["pretrain_images_per_second"] * results["pretrain_seconds"] == pytest.approx(7 * 8)
    for a, b in zip(weights, uninterrupted):
        np.testing.assert_array_equal(a, b)


@pytest.mark.filterwarnings("ignore:Asked for a vocabulary")
def test_a_text_run_stopped_mid_epoch_resumes_to_the_same_weights(tmp_path, monkeypatch):
    # Length buckets, shuffled: the resumed run must find its place in them as the image pipeline does.
    monkeypatch.setenv("KERAS_PRETRAIN_CACHE", str(tmp_path / "cache"))
    table = write_labelled_csv(tmp_path / "labelled.csv", per_class=20)

    def config(name):
        text = TextPipelineConfig(
            data=TextDataConfig(labelled=str(table), bucket_widths=[12, 16]),
            tokenizer=TokenizerConfig(vocabulary_size=60),
            backbone=BertConfig(num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32, sequence_length=24),
            pretrain=PretrainConfig(steps=10, batch_size=4, checkpoint_every=3), output_dir=str(tmp_path / name),
        )
        text.evaluation.labels_per_class, text.evaluation.val_per_class = 2, 2
        return text

    uninterrupted, finished = pretrained_weights(TextPipeline(config("straight"), verbose=0))
    stopped = TextPipeline(config("resumed"), verbose=0, callbacks=[StopAt(4)])
    with pytest.raises(KeyboardInterrupt):
        pretrained_weights(stopped)
    assert stopped.checkpoint.step() == 3 and finished["pretrain_steps"] > 4  # stopped inside the first epoch
    weights, results = pretrained_weights(TextPipeline(config("resumed"), verbose=0))
    assert results["pretrain_steps"] == finished["pretrain_steps"]
    for a, b in zip(weights, uninterrupted):
        np.testing.assert_array_equal(a, b)


def test_another_configuration_or_a_damaged_checkpoint_is_refused(tmp_path, folder):
    pipeline = ImagePipeline(tiny_config(tmp_path, folder, "run"), verbose=0, callbacks=[StopAt(4)])
    with pytest.raises(KeyboardInterrupt):
        pretrained_weights(pipeline)
    other = ImagePipeline(tiny_config(tmp_path, folder, "run", learning_rate=1e-2), verbose=0)
    with pytest.raises(CheckpointError, match=r"from another configuration \(config.pretrain.learning_rate: 0.0015 "
                                              r"then, 0.01 now\): rerun with the same settings.*--restart"):
        other.resume_point()
    # --restart drops the checkpoint once the run's data has loaded, not before: a mistyped --data keeps it.
    mistyped = tiny_config(tmp_path, tmp_path / "shapez", "run", learning_rate=1e-2)
    with pytest.raises(ValueError, match="shapez"):
        ImagePipeline(mistyped, verbose=0, restart=True).run()
    assert pipeline.checkpoint.step() == 3
    restarted = ImagePipeline(tiny_config(tmp_path, folder, "run", learning_rate=1e-2), verbose=0, restart=True,
                              callbacks=[StopAt(1)])
    assert restarted.resume_point() is None
    with pytest.raises(KeyboardInterrupt):
        restarted.run()
    assert not restarted.checkpoint.exists()  # dropped; the new run stopped before its first checkpoint
    pipeline = ImagePipeline(tiny_config(tmp_path, folder, "run"), verbose=0, callbacks=[StopAt(4)])
    with pytest.raises(KeyboardInterrupt):
        pretrained_weights(pipeline)
    (pipeline.checkpoint.directory / "model.weights.h5").write_bytes(b"not a weights file")
    with pytest.raises(CheckpointError, match=r"model.weights.h5 cannot be read .*: pass --restart to start over"):
        pretrained_weights(ImagePipeline(tiny_config(tmp_path, folder, "run"), verbose=0))


def test_checkpoints_every_n_steps_and_at_the_end_not_at_each_short_epoch(tmp_path):
    class Recording(Checkpoint):
        steps = []

        def save(self, model, step):
            self.steps.append(step)

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    checkpoint = Recording(tmp_path / "checkpoint", {})
    # 3 epochs of 3 steps with a checkpoint every 4 steps: at steps 4 and 8, then at the end (9).
    model.fit(np.zeros((9, 3)), np.zeros((9, 2)), batch_size=3, epochs=3, verbose=0, callbacks=[checkpoint.callback(4)])
    assert checkpoint.steps == [4, 8, 9]


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)
    checkpoint = Checkpoint(tmp_path / "checkpoint", {"config": {"a": 1}})
    checkpoint.save(model, 4)
    saved = [np.asarray(w) for w in model.get_weights()]
    model.layers[0].kernel.assign(np.ones((3, 2)))

    def full_disk(path, *args, **kwargs):
        open(path, "wb").write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(model, "save_weights", full_disk)
    with pytest.raises(OSError, match="No space left on device.*the previous one is intact"):
        checkpoint.save(model, 6)
    monkeypatch.undo()
    assert checkpoint.step() == 4 and [p.name for p in tmp_path.iterdir()] == ["checkpoint"]
    assert checkpoint.restore(model) == 4
    for a, b in zip(model.get_weights(), saved):
        np.testing.assert_array_equal(a, b)


def test_finished_phases_are_recorded_for_the_same_configuration_only(tmp_path):
    record = RunRecord(tmp_path / "phases.json", {"config": {"seed": 0}})
    assert record.get("pretraining") is None
    record.put("pretraining", {"pretrain_seconds": 3.0})
    assert RunRecord(tmp_path / "phases.json", {"config": {"seed": 0}}).get("pretraining") == {"pretrain_seconds": 3.0}
    with pytest.raises(CheckpointError, match=r"config.seed: 0 then, 1 now"):
        RunRecord(tmp_path / "phases.json", {"config": {"seed": 1}}).get("pretraining")
    (tmp_path / "phases.json").write_text("{")
    with pytest.raises(CheckpointError, match="phases.json is corrupt"):
        record.get("pretraining")


def test_a_moved_run_folder_loads_its_own_files_and_a_damaged_one_names_the_fix(tmp_path, folder):
    # What an earlier run in tmp_path/"before" recorded; the folder has since moved to tmp_path/"moved".
    moved = ImagePipeline(tiny_config(tmp_path, folder, "moved"), verbose=0)
    moved.output_dir.mkdir()
    encoder = ViTEncoder(image_size=20, channels=3, patch_size=5, hidden_dim=16, depth=1, num_heads=2)
    encoder.build((None, 20, 20, 3))
    encoder.save(moved.output_dir / "encoder.keras")
    finished = {"encoder_path": str(tmp_path / "before" / "encoder.keras")}
    loaded = moved.load_pretrained(None, finished)
    np.testing.assert_array_equal(loaded.get_weights()[0], encoder.get_weights()[0])
    store = ClassifierStore(moved.record, tmp_path / "before" / "classifiers", {"epochs": 1})
    classifier = ImageClassifier(loaded, 2)
    classifier(np.zeros((1, 20, 20, 3), "uint8"))
    store.save("kNN", 0.5, classifier)
    (tmp_path / "before").rename(tmp_path / "gone")
    moved_store = ClassifierStore(moved.record, tmp_path / "gone" / "classifiers", {"epochs": 1})
    assert moved_store.load("kNN")[0] == 0.5
    (moved.output_dir / "encoder.keras").write_bytes(b"damaged")
    with pytest.raises(CheckpointError, match=r"encoder.keras cannot be read as a Keras model \(.*\): pass --restart"):
        moved.load_pretrained(None, finished)


class PoisonAt(AtStep):
    """Turns the weights into NaN after `step` steps: the next loss is NaN."""

    def act(self):
        if hasattr(self.model, "jax_state_sync"):
            self.model.jax_state_sync()  # JAX trains on copies: sync, so the next step reads the poisoned values
        for variable in self.model.trainable_variables:
            variable.assign(variable * np.nan)


def test_a_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, folder):
    pipeline = ImagePipeline(tiny_config(tmp_path, folder, "run"), verbose=0, callbacks=[PoisonAt(5)])
    with pytest.raises(Diverged, match=r"became NaN or infinite at step 6; the last good checkpoint \(step 3\) is kept"):
        pretrained_weights(pipeline)
    model = pipeline.pretrain_model((20, 20, 3), 9)
    assert pipeline.checkpoint.restore(model) == 3
    assert all(np.isfinite(np.asarray(w)).all() for w in model.get_weights())

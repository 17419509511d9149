import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_pretrain.distribute import DistributionPlan
from keras_pretrain.pipelines import (
    ImageDataConfig,
    ImagePipeline,
    ImagePipelineConfig,
    PretrainConfig,
)
from keras_pretrain.pipelines.base import counted, steady_steps_per_second
from keras_pretrain.pipelines.images import OBJECTIVES, ViTConfig, image_augmentation
from tests.conftest import write_image_folder


def pipeline(tmp_path, distribution=None, **data):
    config = ImagePipelineConfig(data=ImageDataConfig(image_size=16, **data), pretrain=PretrainConfig(batch_size=4),
                                 output_dir=str(tmp_path / "run"))
    config.evaluation.labels_per_class, config.evaluation.val_per_class = 2, 2
    return ImagePipeline(config, distribution=distribution, verbose=0)


@pytest.fixture
def folders(tmp_path):
    labelled = write_image_folder(tmp_path / "labelled", per_class=10)
    flat = tmp_path / "flat"
    flat.mkdir()
    for path in sorted((write_image_folder(tmp_path / "more", per_class=3, seed=2)).rglob("*.png")):
        path.rename(flat / f"{path.parent.name}_{path.name}")
    test = write_image_folder(tmp_path / "test", per_class=5, classes=("square", "circle"), seed=1)
    return labelled, flat, test


def test_held_out_test_images_are_kept_out_of_pretraining(tmp_path, folders):
    labelled, flat, _ = folders
    data = pipeline(tmp_path, labelled=str(labelled), unlabeled=[str(flat)]).load_data()
    (source, kept), (extra, extra_indices) = data.pretraining.parts
    assert len(data.splits.test) == 4 and data.description["test_carved"]  # 20% of each class of 10
    assert len(kept) == 20 - 4 - 4 and len(extra_indices) == 6  # minus validation and test, plus the flat folder
    held_out = set(np.flatnonzero(np.isin(np.arange(20), kept, invert=True)))
    assert len(held_out) == 8 and data.pretraining.image_shape == (16, 16, 3)  # some images are RGB
    assert data.splits.train.inputs.shape == (4, 16, 16, 3) and data.splits.test.inputs.dtype == np.uint8


def test_a_separate_test_folder_is_matched_by_class_name(tmp_path, folders):
    labelled, _, test = folders
    data = pipeline(tmp_path, labelled=str(labelled), test=str(test), channels=1).load_data()
    assert data.splits.class_names == ["circle", "square"] and not data.description["test_carved"]
    # The test folder lists its classes the other way round: its labels follow the labelled set's names.
    assert np.bincount(data.splits.test.labels).tolist() == [5, 5]
    assert data.splits.test.inputs.shape == (10, 16, 16, 1)
    assert len(data.pretraining) == 20  # every labelled image: the test set is separate
    (test / "square").rename(test / "triangle")
    with pytest.raises(ValueError, match=r"classes the labelled data lacks: \['triangle'\]"):
        pipeline(tmp_path, labelled=str(labelled), test=str(test)).load_data()


def test_a_flat_folder_cannot_be_the_labelled_data(tmp_path, folders):
    _, flat, _ = folders
    with pytest.raises(ValueError, match="has no labels: give labelled data one subfolder per class"):
        pipeline(tmp_path, labelled=str(flat)).load_data()


class TwoProcesses(DistributionPlan):
    """What a host of a two-process run sees: its own share of the files and half of each global batch."""

    def __init__(self, index):
        super().__init__(num_replicas=2, num_processes=2, process_id=index)

    @property
    def input_shard(self):
        return self.process_id, 2


def test_each_process_reads_its_own_share_of_the_files(tmp_path, folders):
    labelled, flat, _ = folders
    seen = []
    for index in range(2):
        images = pipeline(tmp_path, TwoProcesses(index), labelled=str(labelled), unlabeled=[str(flat)])
        data = images.load_data()
        dataset, steps = images.pretraining_dataset(data.pretraining)
        batches = [batch for batch in dataset.take(steps).as_numpy_iterator()]
        assert steps == 4 and all(len(batch) == 2 for batch in batches)  # 9 of 18 images each, local batches of 2
        seen.append({bytes(image) for batch in dataset.take(20).as_numpy_iterator() for image in batch})
    assert not seen[0] & seen[1]  # no image is read by both processes


def test_pretraining_images_are_shifted_when_asked_the_same_way_on_every_rebuild(tmp_path, folders):
    labelled, _, _ = folders
    plain = pipeline(tmp_path, labelled=str(labelled))
    shifted = pipeline(tmp_path, labelled=str(labelled), pretrain_augment=True)
    data = plain.load_data()

    def first_batches(images, skip=0):
        # As `fit_pretraining` builds them: a fresh copy with the seeds reset, skipping the batches a resumed run saw.
        dataset = images.new_dataset(lambda: images.pretraining_dataset(data.pretraining)[0])
        return np.concatenate(list(dataset.skip(skip).take(3 - skip).as_numpy_iterator())).astype("float32")

    original, moved = first_batches(plain), first_batches(shifted)
    assert moved.shape == original.shape and not np.allclose(moved, original, atol=1)
    assert np.array_equal(first_batches(shifted, skip=1), moved[4:])  # a resumed run gets the same shifts


def test_augmentation_moves_each_image_whole_by_at_most_an_eighth_of_its_side():
    images = np.zeros((64, 16, 16, 1), "uint8")
    images[:, 6:10, 6:10] = 255  # a 4 x 4 square in the middle
    keras.utils.set_random_seed(0)
    batches = tf.data.Dataset.from_tensor_slices(images).batch(32).map(image_augmentation())
    moved = np.concatenate(list(batches.as_numpy_iterator()))[..., 0]
    np.testing.assert_allclose(moved.sum(axis=(1, 2)), 16 * 255, rtol=1e-3)  # all of it still there
    rows, cols = np.indices((16, 16))
    centres = np.stack([(moved * rows).sum(axis=(1, 2)), (moved * cols).sum(axis=(1, 2))], 1) / (16 * 255)
    shifts = centres - 7.5
    assert np.abs(shifts).max() <= 2 + 1e-3  # an eighth of 16 pixels
    assert shifts.std(axis=0).min() > 0.5  # every image its own shift, in both directions


def test_flips_mirror_about_half_the_images_and_only_when_asked():
    images = np.zeros((64, 16, 16, 1), np.float32)
    images[:, 6:10, 1:5] = 255  # a square on the left: a shift of 2 pixels at most keeps it there
    for flips in (False, True):
        keras.utils.set_random_seed(0)
        batches = tf.data.Dataset.from_tensor_slices(images).batch(32).map(image_augmentation(flips))
        moved = np.concatenate(list(batches.as_numpy_iterator()))[..., 0]
        on_the_right = (moved[:, :, 8:].sum(axis=(1, 2)) > moved[:, :, :8].sum(axis=(1, 2))).mean()
        assert (on_the_right == 0) if not flips else (0.25 < on_the_right < 0.75), on_the_right


def test_the_budget_becomes_epochs_and_steps_whatever_the_data_size(tmp_path, folders):
    labelled, _, _ = folders
    images = pipeline(tmp_path, labelled=str(labelled))
    images.config.pretrain.steps = 3000
    assert images.schedule(10, None, None) == (300, 10, "pretrain.steps")  # a small set: many passes
    assert images.schedule(5000, None, None) == (1, 3000, "pretrain.steps")  # a large one: part of a pass
    images.config.pretrain.steps, images.config.pretrain.epochs = None, 4
    assert images.schedule(10, None, None) == (4, 10, "pretrain.epochs")


def test_a_time_budget_is_measured_on_the_model_itself(tmp_path, folders):
    labelled, _, _ = folders
    images = pipeline(tmp_path, labelled=str(labelled))
    images.config.pretrain.budget_minutes = 0.05
    images.config.encoder.hidden_dim, images.config.encoder.depth, images.config.encoder.num_heads = 16, 1, 2
    data = images.load_data()
    dataset, steps_per_pass = images.pretraining_dataset(data.pretraining)
    built = []
    new_model = lambda total: built.append(total) or images.pretrain_model(data.pretraining.image_shape, total)  # noqa: E731
    epochs, steps, why = images.schedule(steps_per_pass, new_model, lambda: dataset)
    rate = float(why.split(" at ")[1].split(" steps/s")[0])
    assert rate > 0 and why.endswith("(pretrain.budget_minutes)") and built == [1000]
    assert abs(epochs * steps - 3 * rate) <= steps_per_pass + 1  # 3 seconds' worth of steps


def test_counts_in_the_log_take_the_singular_for_one():
    assert f"{counted(1, 'epoch')} of {counted(2, 'step')}" == "1 epoch of 2 steps"
    assert f"{counted(0, 'epoch')} of {counted(1, 'step')}" == "0 epochs of 1 step"


def test_steps_that_compile_do_not_shorten_a_time_budget():
    # Length buckets (or any new batch shape) compile at random steps: those are left out of the rate.
    assert steady_steps_per_second([0.1, 0.1, 2.5, 0.1, 0.1, 1.9]) == pytest.approx(10.0)
    assert steady_steps_per_second([0.2, 0.25, 0.2, 0.25]) == pytest.approx(1 / 0.225)


def test_the_pooling_setting_reaches_every_classifier_and_is_checked(tmp_path, folders):
    labelled, _, _ = folders
    images = pipeline(tmp_path, labelled=str(labelled))
    images.config.pooling = "flatten"
    data = images.load_data()
    task = images.task(data)
    encoder = images.new_encoder(data.pretraining.image_shape)
    encoder.build((None, *data.pretraining.image_shape))
    classifier = task.new_classifier(encoder)
    assert classifier.pooling == "flatten" and classifier.embedding_dim == 16 * encoder.hidden_dim  # a 4 x 4 grid
    assert task.new_classifier().pooling == "flatten"  # from scratch too
    with pytest.raises(ValueError, match="pooling must be one of mean, flatten; got 'max'"):
        ImagePipelineConfig(pooling="max")


@pytest.mark.parametrize("objective", ["simmim", "latent"])
def test_the_other_image_objectives_pretrain_through_the_pipeline(tmp_path, folders, objective):
    config = ImagePipelineConfig(objective=objective, data=ImageDataConfig(labelled=str(folders[0]), image_size=16),
                                 encoder=ViTConfig(patch_size=4, hidden_dim=16, depth=2, num_heads=2),
                                 pretrain=PretrainConfig(steps=3, batch_size=4), output_dir=str(tmp_path / "run"))
    config.evaluation.labels_per_class, config.evaluation.val_per_class = 2, 2
    images_pipeline = ImagePipeline(config, verbose=0)
    images_pipeline.output_dir.mkdir()
    model = images_pipeline.pretrain_model((16, 16, 3), total_steps=3)
    assert type(model) is OBJECTIVES[objective]
    if objective == "latent":  # the teacher's momentum reaches its final value when pre-training ends
        assert model.momentum_steps == 3 and model.pretrained_encoder is model.teacher
    encoder, results = images_pipeline.pretrain(images_pipeline.load_data())
    assert results["objective"] == objective and results["pretrain_steps"] == 3
    assert np.isfinite(results["pretrain_final_loss"])
    saved = keras.saving.load_model(tmp_path / "run" / "encoder.keras")
    np.testing.assert_array_equal(saved.get_weights()[0], encoder.get_weights()[0])
    assert not (tmp_path / "run" / "reconstructions.png").exists()  # MAE's plot alone

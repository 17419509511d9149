import keras
import numpy as np
import pytest
from keras import ops

from keras_pretrain.models import ViTEncoder
from keras_pretrain.objectives import LatentMaskedPrediction


def small_model(**options):
    encoder = ViTEncoder(patch_size=7, hidden_dim=32, depth=2, num_heads=2)
    model = LatentMaskedPrediction(encoder, predictor_dim=16, **{"seed": 1, **options})
    model.build((None, 28, 28, 1))
    return model


def numpy_normalize(x):
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-6)


def test_masks_and_targets_match_the_numpy_reference(images):
    model = small_model(mask_ratio=0.75, target_layers=2)
    noise = np.random.default_rng(0).random((8, 16)).astype("float32")
    outputs = {k: ops.convert_to_numpy(v) for k, v in model(images, noise=noise).items()}
    expected_mask = np.zeros((8, 16))
    np.put_along_axis(expected_mask, np.argsort(-noise, axis=1)[:, :12], 1.0, axis=1)
    np.testing.assert_array_equal(outputs["mask"], expected_mask)
    states = [ops.convert_to_numpy(s) for s in model.teacher.hidden_states(model.teacher.embed_patches(images))]
    expected = numpy_normalize((numpy_normalize(states[0]) + numpy_normalize(states[1])) / 2)
    np.testing.assert_allclose(outputs["targets"], expected, atol=1e-4)
    mask = outputs["mask"]
    loss = ops.convert_to_numpy(model.compute_loss(images, None, outputs))
    squared = ((outputs["predictions"] - outputs["targets"]) ** 2).mean(-1)
    assert float(loss) == pytest.approx(float((squared * mask).sum() / mask.sum()), rel=1e-5)


def test_the_student_sees_only_visible_patches(images):
    model = small_model()
    noise = np.random.default_rng(0).random((8, 16)).astype("float32")
    first = ops.convert_to_numpy(model(images, noise=noise)["predictions"])
    masked = np.argsort(-noise, axis=1)[:, :12]
    changed = images.copy()
    for b in range(8):
        for patch in masked[b]:
            row, col = divmod(int(patch), 4)
            changed[b, 7 * row : 7 * row + 7, 7 * col : 7 * col + 7] = 255 - changed[b, 7 * row : 7 * row + 7, 7 * col : 7 * col + 7]
    outputs = model(changed, noise=noise)
    np.testing.assert_allclose(ops.convert_to_numpy(outputs["predictions"]), first, atol=1e-5)
    # The teacher sees the whole image: its targets do change.
    assert not np.allclose(ops.convert_to_numpy(outputs["targets"]), ops.convert_to_numpy(model(images, noise=noise)["targets"]))


def test_the_teacher_follows_the_student_as_a_moving_average(images):
    model = small_model(momentum=0.9, final_momentum=1.0, momentum_steps=4)
    assert model.pretrained_encoder is model.teacher and model.teacher.name == "teacher"
    # A copy of the student at the start; not trained by the optimizer.
    for t, s in zip(model.teacher.get_weights(), model.encoder.get_weights()):
        np.testing.assert_array_equal(t, s)
    assert not model.teacher.trainable_weights
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    teacher_before = [np.array(w) for w in model.teacher.get_weights()]
    # Two steps: the first averages the teacher with a still identical student, the second with a trained one.
    model.fit(np.repeat(images, 2, axis=0), batch_size=8, epochs=1, verbose=0)
    moved = [a - b for a, b in zip(model.teacher.get_weights(), teacher_before)]
    assert max(float(np.abs(m).max()) for m in moved) > 0
    # The momentum rises linearly: after 4 updates it is 1 and the teacher stops moving.
    model.fit(np.repeat(images, 2, axis=0), batch_size=8, epochs=1, verbose=0)
    frozen = [np.array(w) for w in model.teacher.get_weights()]
    model.fit(images, batch_size=8, epochs=1, verbose=0)
    for a, b in zip(model.teacher.get_weights(), frozen):
        np.testing.assert_array_equal(a, b)
    assert float(ops.convert_to_numpy(model.teacher_updates)) == 5.0


def test_one_update_is_the_moving_average_formula(images):
    model = small_model(momentum=0.8, momentum_steps=None)
    teacher = [np.array(w) for w in model.teacher.get_weights()]
    for variable in model.encoder.trainable_weights:  # move the student away from the teacher
        variable.assign(variable + 0.5)
    student = [np.array(w) for w in model.encoder.get_weights()]
    model.update_teacher()
    for t, s, new in zip(teacher, student, model.teacher.get_weights()):
        np.testing.assert_allclose(new, 0.8 * t + 0.2 * s, atol=1e-6)


def test_fit_learns_and_saves(images, tmp_path):
    model = small_model(momentum=0.99)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    losses = model.fit(np.repeat(images, 4, axis=0), batch_size=8, epochs=5, verbose=0).history["loss"]
    assert losses[-1] < losses[0]
    model.save(tmp_path / "latent.keras")
    loaded = keras.saving.load_model(tmp_path / "latent.keras")
    for a, b in zip(loaded.teacher.get_weights(), model.teacher.get_weights()):
        np.testing.assert_array_equal(a, b)

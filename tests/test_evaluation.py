import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from keras_pretrain.evaluation import EvaluationConfig, softmax_weights


@pytest.mark.parametrize("classes", [2, 3])
def test_a_fitted_logistic_regression_becomes_a_softmax_head_with_the_same_probabilities(classes):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5)).astype("float32")
    y = np.arange(60) % classes
    model = LogisticRegression().fit(x + y[:, None], y)
    kernel, bias = softmax_weights(model)
    assert kernel.shape == (5, classes) and bias.shape == (classes,)
    logits = x @ kernel + bias
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    np.testing.assert_allclose(probabilities, model.predict_proba(x), atol=1e-5)


def test_evaluation_settings_are_checked_when_set():
    with pytest.raises(ValueError, match="labels per class must be at least 1; got 0"):
        EvaluationConfig(labels_per_class=0)
    with pytest.raises(ValueError, match="evaluation.test_fraction must lie in"):
        EvaluationConfig(test_fraction=1.5)


def band_images(count, seed=0):
    """Three learnable classes: a bright band at the top, middle or bottom of 28x28 grey images."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 3
    images = rng.integers(0, 60, (count, 28, 28, 1)).astype("uint8")
    for i, label in enumerate(labels):
        images[i, 9 * label : 9 * label + 8] = 230
    return images, labels


def tiny_task_and_splits(pool_size=60, **config):
    from keras_pretrain.evaluation import FewLabelSplits, LabelPool, Split
    from keras_pretrain.models import ViTEncoder
    from keras_pretrain.pipelines.images import ImageTask

    new_encoder = lambda: ViTEncoder(patch_size=7, hidden_dim=16, depth=1, num_heads=2)  # noqa: E731
    task = ImageTask(new_encoder, (28, 28, 1), ["top", "middle", "bottom"])
    (x, y), (vx, vy), (tx, ty), (px, py) = (band_images(n, seed) for seed, n in enumerate((6, 15, 30, pool_size)))
    splits = FewLabelSplits(Split(x, y), Split(vx, vy), Split(tx, ty), task.class_names, LabelPool(py, lambda i: px[i]))
    config = EvaluationConfig(labels_per_class=2, val_per_class=5, finetune_epochs=2, finetune_batch_size=4, **config)
    return task, splits, config, new_encoder()


def test_frozen_protocols_and_the_choice_on_validation():
    from keras_pretrain.evaluation import FewLabelEvaluation
    from keras_pretrain.models.knn import KnnHead

    task, splits, config, encoder = tiny_task_and_splits(curve_labels_per_class=[])
    encoder.build((None, 28, 28, 1))
    lines = []
    result = FewLabelEvaluation(task, splits, config, log=lines.append).run(encoder, finetune=False)
    validation = result.results["validation_accuracy"]
    assert set(validation) == {"linear probe", "kNN"} and "scratch_accuracy" not in result.results
    assert result.protocol == max(validation, key=lambda p: (validation[p], p == "linear probe"))
    assert isinstance(result.chosen.head, KnnHead) == (result.protocol == "kNN")
    for key in ("baseline_accuracy", "probe_accuracy", "knn_accuracy", "pretrained_accuracy"):
        assert 0.0 <= result.results[key] <= 1.0
    assert result.results["baseline_accuracy"] >= 0.9  # the bands are linearly separable in pixels
    assert any(line.startswith("  kNN: k ") for line in lines) and result.results["label_curve"] == {}


def test_label_curve_draws_each_size_several_times_and_skips_what_a_class_cannot_give():
    from keras_pretrain.evaluation import FewLabelEvaluation, format_curve

    task, splits, config, encoder = tiny_task_and_splits(curve_labels_per_class=[1, 4, 50], curve_seeds=2)
    encoder.build((None, 28, 28, 1))
    curve = FewLabelEvaluation(task, splits, config, log=lambda _: None).label_curve({"mine": encoder, "random": None})
    assert set(curve) == {"baseline", "mine", "random"}
    assert set(curve["mine"]) == {"linear probe", "kNN"}
    for points in (curve["mine"]["kNN"], curve["baseline"]["logistic regression (pixels)"]):
        assert set(points) == {"1", "4"}  # a class of the pool has 20 examples: 50 is skipped
        assert len(points["4"]["runs"]) == 2 and points["4"]["std"] == pytest.approx(np.std(points["4"]["runs"]))
    assert "labels per class" in format_curve(curve) and "±" in format_curve(curve)


def test_fine_tuning_runs_its_epochs_of_steps_and_keeps_the_best_point_on_validation():
    from keras_pretrain.evaluation import FewLabelEvaluation

    task, splits, config, encoder = tiny_task_and_splits(finetune_grid=[(1e-3, 0.75), (3e-4, None)])
    encoder.build((None, 28, 28, 1))
    lines = []
    evaluation = FewLabelEvaluation(task, splits, config, log=lines.append)
    val_accuracy, model = evaluation.best_on_validation("fine-tune", config.finetune_grid, encoder)
    assert evaluation.finetune_steps == 2 * 2  # 2 epochs of 6 labels in batches of 4
    assert int(model.optimizer.iterations) == evaluation.finetune_steps
    scores = [float(line.rsplit(" ", 1)[1].rstrip("%")) for line in lines]
    assert len(scores) == 2 and 100 * val_accuracy == pytest.approx(max(scores), abs=0.01)


def test_fine_tuning_batches_are_augmented_and_mixed_up():
    from keras_pretrain.evaluation import FewLabelEvaluation

    task, splits, config, _ = tiny_task_and_splits(augment=True, mixup=0.4)
    inputs, labels = next(iter(FewLabelEvaluation(task, splits, config, log=lambda _: None).training_data()))
    inputs, labels = np.asarray(inputs), np.asarray(labels)
    assert inputs.shape == (4, 28, 28, 1) and labels.shape == (4, 3)
    np.testing.assert_allclose(labels.sum(1), 1.0, atol=1e-6)
    assert not np.isin(labels, [0.0, 1.0]).all()  # mixed labels are soft
    plain = FewLabelEvaluation(task, splits, EvaluationConfig(labels_per_class=2, val_per_class=5, finetune_batch_size=6),
                               log=lambda _: None)
    inputs, labels = next(iter(plain.training_data()))
    assert np.isin(np.asarray(labels), [0.0, 1.0]).all()
    assert sorted(map(bytes, np.asarray(inputs))) == sorted(map(bytes, splits.train.inputs))  # no augmentation: as given


def test_mixup_needs_inputs_that_blend():
    from keras_pretrain.evaluation import FewLabelEvaluation

    task, splits, config, _ = tiny_task_and_splits(mixup=0.2)
    task.mixable = False
    with pytest.raises(ValueError, match="evaluation.mixup blends inputs, which ImageTask cannot"):
        FewLabelEvaluation(task, splits, config)


def test_embeddings_of_several_inputs_come_back_in_order_as_the_classifier_computes_them():
    from keras import ops

    from keras_pretrain.evaluation import embed
    from keras_pretrain.models import ImageClassifier
    from tests.models.test_text_classifier import tiny_classifier

    images = ImageClassifier(tiny_task_and_splits()[3], 3, pooling="flatten")
    images.build((None, 28, 28, 1))
    first, second = band_images(5)[0], band_images(9, seed=1)[0]
    embedded = embed(images, first, second, batch_size=4)  # 14 images: the last batch is padded
    assert [e.shape for e in embedded] == [(5, 16 * 16), (9, 16 * 16)]  # 16 patches of width 16
    for inputs, embeddings in zip((first, second), embedded):
        np.testing.assert_allclose(embeddings, ops.convert_to_numpy(images.embed(inputs)), atol=1e-5)

    texts = tiny_classifier()
    short, long = (texts.preprocess(["a cat runs"] * 3), texts.preprocess(["a green tree", "a dog", "leaf", "a"]))
    embedded = embed(texts, *({k: ops.convert_to_numpy(v) for k, v in x.items()} for x in (short, long)), batch_size=4)
    assert [e.shape for e in embedded] == [(3, 16), (4, 16)]
    for inputs, embeddings in zip((short, long), embedded):
        np.testing.assert_allclose(embeddings, ops.convert_to_numpy(texts.embed(inputs)), atol=1e-5)

import json

import keras
import numpy as np
import pytest

from keras_pretrain.data import DataNotFoundError
from keras_pretrain.pipelines import ImagePipeline, load_recipe, pipeline_for

# The smoke run tests the pipeline, not the model size.
TINY = ["encoder.hidden_dim=16", "encoder.depth=1", "encoder.num_heads=2", "mae.decoder_dim=16",
        "evaluation.finetune_epochs=3", "evaluation.labels_per_class=2", "export.enabled=False"]


def tiny_pipeline(tmp_path, data_dir, *overrides):
    config = load_recipe("mae_fashion_mnist", [*TINY, f"data.data_dir={data_dir}", f"output_dir={tmp_path / 'run'}",
                                               *overrides], quick=True)
    return pipeline_for(config, verbose=0)


def test_the_recipe_is_a_configuration_of_the_image_pipeline():
    config = load_recipe("mae_fashion_mnist")
    assert (config.data.labelled, config.data.test, config.data.image_size, config.data.channels) == (
        "fashion_mnist", "fashion_mnist:test", 28, 1)
    assert (config.pretrain.epochs, config.pretrain.batch_size, config.encoder.patch_size) == (40, 256, 7)
    assert config.mae.mask_ratio == 0.8125  # 13 of 16 patches
    assert config.evaluation.augment and config.mae.norm_pix_loss and config.pooling == "flatten"
    assert (config.evaluation.labels_per_class, config.evaluation.val_per_class) == (10, 100)
    quick = load_recipe("mae_fashion_mnist", quick=True)
    assert quick.smoke_run and quick.pretrain.epochs == 1 and quick.data.max_pretrain_examples == 4096
    assert quick.evaluation.finetune_grid == config.evaluation.finetune_grid[:1]


def test_splits_and_pretraining_images(tmp_path, fashion_dir):
    pipeline = tiny_pipeline(tmp_path, fashion_dir)
    assert isinstance(pipeline, ImagePipeline)
    data = pipeline.load_data()
    train, val, test = data.splits.train, data.splits.val, data.splits.test
    assert train.inputs.shape == (20, 28, 28, 1) and train.inputs.dtype == np.uint8
    assert np.bincount(train.labels).tolist() == [2] * 10 and np.bincount(val.labels).tolist() == [20] * 10
    assert not set(map(bytes, train.inputs)) & set(map(bytes, val.inputs))
    assert len(test) == 100  # the whole (synthetic) test file: a separate test set, nothing held out
    # Every training image is pre-training data (the test set never is), up to the quick run's cap.
    (source, indices), = data.pretraining.parts
    assert len(source) == 400 and np.array_equal(indices, np.arange(400))
    assert data.splits.class_names[0] == "T-shirt/top" and not data.description["test_carved"]


@pytest.mark.slow
def test_smoke_run_writes_results_and_plots(tmp_path, fashion_dir):
    results = tiny_pipeline(tmp_path, fashion_dir).run()
    written = json.loads((tmp_path / "run" / "results.json").read_text())
    ran_on = {"recipe": "mae_fashion_mnist", "backend": keras.backend.backend()}
    assert written == json.loads(json.dumps(results | ran_on))
    for key in ("baseline_accuracy", "scratch_accuracy", "probe_accuracy", "finetune_accuracy", "pretrained_accuracy"):
        assert 0.0 <= written[key] <= 1.0
    # The synthetic classes are bands at different rows: the linear models must find them.
    assert written["baseline_accuracy"] > 0.5 and written["probe_accuracy"] > 0.3
    assert written["labels_per_class"] == 2 and written["quick"] and written["test_size"] == 100
    assert written["config"]["encoder"]["hidden_dim"] == 16 and "export_path" not in written
    for plot in ("pretrain_loss.png", "reconstructions.png", "accuracies.png"):
        assert (tmp_path / "run" / plot).read_bytes()[:4] == b"\x89PNG"


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        tiny_pipeline(tmp_path, tmp_path / "no_data").load_data()
    assert not (tmp_path / "run").exists()

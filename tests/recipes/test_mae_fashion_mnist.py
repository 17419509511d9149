import json

import keras
import numpy as np
import pytest

from keras_pretrain.data import DataNotFoundError
from keras_pretrain.objectives import MaskedAutoencoder
from keras_pretrain.recipe import load_recipe

TINY_ENCODER = dict(image_size=28, channels=1, patch_size=7, hidden_dim=16, depth=1, num_heads=2, mlp_ratio=2)


def tiny_recipe(tmp_path, data_dir, **options):
    recipe = load_recipe(
        "mae_fashion_mnist", data_dir=data_dir, quick=True, labels_per_class=2, verbose=0,
        output_dir=tmp_path / "run", export_root=tmp_path / "saved_models", **options,
    )
    recipe.encoder_config = TINY_ENCODER  # the smoke run tests the pipeline, not the model size
    recipe.decoder_config = {**recipe.decoder_config, "decoder_dim": 16}
    recipe.finetune_epochs = 3
    return recipe


def test_recipe_hands_out_models_a_user_can_fit(tmp_path, fashion_dir):
    recipe = tiny_recipe(tmp_path, fashion_dir)
    data = recipe.load_data()
    assert data.train[0].shape == (20, 28, 28, 1) and np.bincount(data.train[1]).tolist() == [2] * 10
    assert not set(map(bytes, data.train[0])) & set(map(bytes, data.val[0]))
    mae = recipe.pretrain_model(num_images=len(data.unlabeled))
    assert isinstance(mae, MaskedAutoencoder) and mae.optimizer is not None
    history = mae.fit(data.unlabeled[:64], batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    classifier = recipe.finetune_model(mae.encoder)
    classifier.fit(*data.train, batch_size=10, epochs=1, verbose=0)
    assert 0.0 <= classifier.evaluate(*data.test, verbose=0)[1] <= 1.0


def test_smoke_run_writes_results_plots_and_export(tmp_path, fashion_dir):
    results = tiny_recipe(tmp_path, fashion_dir).run()
    written = json.loads((tmp_path / "run" / "results.json").read_text())
    assert written == json.loads(json.dumps(results | {"recipe": "mae_fashion_mnist", "backend": written["backend"]}))
    for key in ("recipe", "backend", "labels_per_class", "baseline_accuracy", "scratch_accuracy",
                "probe_accuracy", "pretrained_accuracy", "pretrain_seconds", "export_path"):
        assert key in written
    for key in ("baseline_accuracy", "scratch_accuracy", "probe_accuracy", "pretrained_accuracy"):
        assert 0.0 <= written[key] <= 1.0
    # The synthetic classes are bands at different rows: the linear models must find them.
    assert written["baseline_accuracy"] > 0.5 and written["probe_accuracy"] > 0.3
    assert written["labels_per_class"] == 2
    assert (tmp_path / "saved_models" / "mae_fashion_mnist" / "1" / "saved_model.pb").is_file()
    assert written["export_path"] == str(tmp_path / "saved_models" / "mae_fashion_mnist" / "1")
    assert written["export_max_abs_diff"] <= 1e-5
    encoder = keras.saving.load_model(written["encoder_path"])  # the pre-trained encoder, reusable
    assert encoder.hidden_dim == TINY_ENCODER["hidden_dim"]
    for plot in ("pretrain_loss.png", "reconstructions.png", "accuracies.png"):
        assert (tmp_path / "run" / plot).read_bytes()[:4] == b"\x89PNG"


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        tiny_recipe(tmp_path, tmp_path / "no_data").load_data()

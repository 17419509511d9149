import keras
import numpy as np
import pytest
from keras import ops

from keras_pretrain.models import ImageClassifier, ViTEncoder
from keras_pretrain.optimizers import LayerDecayAdamW, make_adamw


def dense_model():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.LayerNormalization()])
    model.build((None, 4))
    return model


def values(variables):
    return [ops.convert_to_numpy(v).copy() for v in variables]


def test_weight_decay_skips_biases_and_norm_scales():
    model = dense_model()
    for v in model.trainable_variables:
        v.assign(np.ones(v.shape, "float32"))
    optimizer = make_adamw(model, 0.1, total_steps=10, warmup_steps=0, weight_decay=0.5)
    # Zero gradients: Adam moves nothing, so any change is weight decay.
    optimizer.apply([ops.zeros(v.shape) for v in model.trainable_variables], model.trainable_variables)
    after = dict(zip([v.path for v in model.trainable_variables], values(model.trainable_variables)))
    decayed = {path for path, value in after.items() if not np.allclose(value, 1.0)}
    assert decayed == {v.path for v in model.trainable_variables if len(v.shape) == 2}


def test_warmup_then_cosine_schedule():
    optimizer = make_adamw(dense_model(), 1e-3, total_steps=100, warmup_steps=10)

    def lr(step):
        optimizer.iterations.assign(step)
        return float(ops.convert_to_numpy(optimizer.learning_rate))

    assert lr(0) == 0.0
    assert lr(5) == pytest.approx(5e-4, rel=1e-4)
    assert lr(10) == pytest.approx(1e-3, rel=1e-4)
    assert lr(55) == pytest.approx(5e-4, rel=1e-3)
    assert lr(100) == pytest.approx(0.0, abs=1e-9)


def test_layer_decay_scales_each_layers_step():
    encoder = ViTEncoder(patch_size=7, hidden_dim=16, depth=2, num_heads=2)
    model = ImageClassifier(encoder, num_classes=3)
    model.build((None, 28, 28, 1))
    optimizer = make_adamw(model, 0.01, total_steps=10, warmup_steps=0, weight_decay=0.0, layer_decay=0.5)
    assert isinstance(optimizer, LayerDecayAdamW)
    before = values(model.trainable_variables)
    # Adam's first step moves every weight by about lr * scale, whatever the gradient's size.
    optimizer.apply([ops.ones(v.shape) for v in model.trainable_variables], model.trainable_variables)
    steps = {}
    for v, old in zip(model.trainable_variables, before):
        steps[model.layer_id(v.path)] = float(np.abs(ops.convert_to_numpy(v) - old).mean())
    assert sorted(steps) == [0, 1, 2, 3]
    for layer_id, step in steps.items():
        assert step == pytest.approx(0.01 * 0.5 ** (3 - layer_id), rel=0.02)


def test_unbuilt_model_is_a_clear_error():
    with pytest.raises(ValueError, match="needs a built model"):
        make_adamw(keras.Sequential([keras.layers.Dense(2)]), 1e-3, total_steps=10)


@pytest.mark.parametrize("layer_decay", [0.0, 1.5])
def test_layer_decay_out_of_range(layer_decay):
    with pytest.raises(ValueError, match="layer_decay"):
        make_adamw(dense_model(), 1e-3, total_steps=10, layer_decay=layer_decay)

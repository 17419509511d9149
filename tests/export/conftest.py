"""A small fine-tuned-looking image classifier that every export test starts from."""

import pytest

from keras_pretrain.models import ImageClassifier, ViTEncoder
from keras_pretrain.optimizers import make_adamw

CLASS_NAMES = ["zero", "one", "two"]


@pytest.fixture
def classifier(images):
    model = ImageClassifier(ViTEncoder(patch_size=7, hidden_dim=16, depth=1, num_heads=2), 3, class_names=CLASS_NAMES)
    model(images)
    # Compiled as fine-tuning compiles it: routes through a .keras file must not need the optimizer class.
    model.compile(optimizer=make_adamw(model, 1e-3, total_steps=10, layer_decay=0.75), loss="mse")
    return model

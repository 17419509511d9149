"""MAE on CIFAR-10 from TensorFlow Datasets (downloaded on first use), 10 labels per class.

    keras-pretrain run mae_cifar10 [--set data.data_dir=~/tensorflow_datasets]
"""

from keras_pretrain.evaluation import EvaluationConfig
from keras_pretrain.pipelines import (
    ImageDataConfig,
    ImagePipelineConfig,
    PretrainConfig,
    ViTConfig,
)

recipe = ImagePipelineConfig(
    name="mae_cifar10",
    data=ImageDataConfig(labelled="tfds:cifar10:train", test="tfds:cifar10:test", image_size=32, channels=3),
    encoder=ViTConfig(patch_size=4, hidden_dim=128, depth=4, num_heads=4, mlp_ratio=2),
    pretrain=PretrainConfig(epochs=10, batch_size=256, learning_rate=1.5e-3),
    evaluation=EvaluationConfig(labels_per_class=10, val_per_class=100),
)

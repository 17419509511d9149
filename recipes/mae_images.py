"""MAE on your own images: a folder with one subfolder per class (--data), plus any unlabeled images (--unlabeled).

Every image of the labelled folder (except a held-out test split, unless
--test is given) and of --unlabeled is pre-training data; then a classifier
is fine-tuned on --labels-per-class labels per class and compared with
logistic regression on pixels and with the same network from scratch.

    keras-pretrain run mae_images --data photos/ [--unlabeled more/] [--test test/] [--labels-per-class 10]
"""

from keras_pretrain.pipelines import (
    ImageDataConfig,
    ImagePipelineConfig,
    PretrainConfig,
)

recipe = ImagePipelineConfig(
    name="mae_images",
    data=ImageDataConfig(image_size=32),
    pretrain=PretrainConfig(epochs=30, batch_size=256, learning_rate=1.5e-3),
)

"""MAE on your own images: a folder with one subfolder per class (--data), plus any unlabeled images (--unlabeled).

Every image of the labelled folder (except a held-out test split, unless
--test is given) and of --unlabeled is pre-training data; then a classifier
is fine-tuned on --labels-per-class labels per class and compared with
logistic regression on pixels and with the same network from scratch.

    keras-pretrain run mae_images --data photos/ [--unlabeled more/] [--test test/] [--labels-per-class 10]
"""

from keras_pretrain.pipelines import ImagePipelineConfig

recipe = ImagePipelineConfig(
    name="mae_images",
    # Sizes, patches and the number of steps follow from the data (printed at the start of a run).
)

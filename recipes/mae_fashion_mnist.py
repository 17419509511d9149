"""MAE pre-training on 60k Fashion-MNIST images, then few-label fine-tuning vs scratch, a linear probe and logistic regression.

Every model sees the same 10 labels per class (drawn with a fixed seed); every
hyperparameter is chosen on 100 other labelled training images per class; the
10,000 test images are used once. Measurements behind each setting:
recipes/README.md.
"""

from keras_pretrain.evaluation import EvaluationConfig
from keras_pretrain.pipelines import (
    ImageDataConfig,
    ImagePipelineConfig,
    MaeConfig,
    PretrainConfig,
    ViTConfig,
)

recipe = ImagePipelineConfig(
    name="mae_fashion_mnist",
    data=ImageDataConfig(labelled="fashion_mnist", test="fashion_mnist:test", image_size=28, channels=1),
    # Patch 7 (16 patches) trains 2.5x faster than patch 4 and did better within the same time.
    encoder=ViTConfig(patch_size=7, hidden_dim=128, depth=4, num_heads=4, mlp_ratio=2),
    # Each patch's pixels normalised before the loss, as in MAE: validation accuracy 76.4% against 74.5% (3 label draws).
    # 13 of the 16 patches masked rather than 12, in the same time: 78.1% against 77.5% on validation (3 label draws).
    mae=MaeConfig(decoder_dim=64, decoder_depth=1, decoder_heads=2, mask_ratio=0.8125, norm_pix_loss=True),
    # 10x MAE's base rate (1.5e-4 x batch / 256): a tiny model on a short budget. About 11 minutes on 2 cores;
    # 40 epochs did better than 46 on validation (78.0% against 77.4%, 3 label draws) and than 12 (at ratio 0.75).
    pretrain=PretrainConfig(epochs=40, batch_size=256, learning_rate=1.5e-3, weight_decay=0.05, beta_2=0.95),
    # Fine-tuning at 3e-4 (layer decay 0.75 and 0.65): 1e-3 was the worst of four points on validation in all three
    # label draws once the loss and pooling above were chosen (mean 75.9% against 76.7-77.0%).
    evaluation=EvaluationConfig(labels_per_class=10, val_per_class=100, finetune_epochs=100, finetune_batch_size=32,
                                augment=True, finetune_grid=[(3e-4, 0.75), (3e-4, 0.65)]),
    # The 16 patch tokens side by side rather than their mean: 77.4% against 76.4% on validation (3 label draws).
    pooling="flatten",
)

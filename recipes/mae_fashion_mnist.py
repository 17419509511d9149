"""MAE pre-training on 60k Fashion-MNIST images, then few-label fine-tuning vs scratch, a linear probe and logistic regression.

Every model sees the same `labels_per_class` labels per class (drawn with a
fixed seed); every hyperparameter is chosen on a validation split carved from
the other labelled training images; the 10,000 test images are used once, at
the end. The fine-tuned classifier is exported for TF Serving.

Drive it by hand:

>>> from keras_pretrain.recipe import load_recipe
>>> recipe = load_recipe("mae_fashion_mnist", labels_per_class=10)
>>> data = recipe.load_data()
>>> mae = recipe.pretrain_model()
>>> mae.fit(data.unlabeled, batch_size=recipe.pretrain_batch_size, epochs=2)
>>> classifier = recipe.finetune_model(mae.encoder)
>>> classifier.fit(*data.train, batch_size=32, epochs=recipe.finetune_epochs)
>>> classifier.evaluate(*data.test)
"""

import time
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_pretrain import plots
from keras_pretrain.baselines import fit_logistic_regression, flatten_pixels
from keras_pretrain.data import few_label_split, load_fashion_mnist
from keras_pretrain.data.fashion_mnist import CLASS_NAMES
from keras_pretrain.models import ImageClassifier, ViTEncoder
from keras_pretrain.objectives import MaskedAutoencoder
from keras_pretrain.optimizers import make_adamw
from keras_pretrain.recipe import Recipe


@dataclass
class FewLabelImages:
    """Unlabeled images for pre-training and `(images, labels)` few-label splits."""

    unlabeled: np.ndarray
    train: tuple
    val: tuple
    test: tuple
    class_names: list


class MaeFashionMnist(Recipe):
    """Masked autoencoder on Fashion-MNIST; see the module docstring."""

    name = "mae_fashion_mnist"
    # Patch 7 (16 patches) trains 2.5x faster than patch 4 and, within the same time,
    # gave better validation accuracy here (fine-tuned 68.5% vs 65.7% at patch 4, width 96, 6 epochs).
    encoder_config = dict(image_size=28, channels=1, patch_size=7, hidden_dim=128, depth=4, num_heads=4, mlp_ratio=2)
    decoder_config = dict(decoder_dim=64, decoder_depth=1, decoder_heads=2, mask_ratio=0.75, norm_pix_loss=False)
    default_pretrain_epochs = 12
    pretrain_batch_size = 256
    # 10x MAE's base rate (1.5e-4 x batch / 256): a tiny model on a 12-epoch budget. Against 4x, it
    # lowered the final loss from 0.0331 to 0.0300 and raised fine-tuned validation accuracy from 68.5% to 72.1%.
    pretrain_learning_rate = 1.5e-3
    finetune_epochs = 100
    finetune_batch_size = 32
    val_per_class = 100
    # Grids searched on the validation split: (learning rate, layer decay), and the probe's C.
    finetune_grid = [(1e-3, 0.75), (3e-4, 0.75)]
    scratch_grid = [(1e-3, None), (3e-4, None)]
    probe_regularizations = (0.01, 0.1, 1.0, 10.0)

    def __init__(self, **options):
        super().__init__(**options)
        if self.quick:
            self.default_pretrain_epochs = 1
            self.finetune_epochs = 20
            self.val_per_class = 20
            self.finetune_grid, self.scratch_grid = self.finetune_grid[:1], self.scratch_grid[:1]
        self.epochs = self.pretrain_epochs or self.default_pretrain_epochs

    def load_data(self):
        """The few-label splits; `--quick` pre-trains on 4,096 images and tests on 2,000."""
        data = load_fashion_mnist(self.data_dir)
        images, labels = data["train"]
        test_images, test_labels = data["test"]
        train_idx, val_idx = few_label_split(labels, self.labels_per_class, self.val_per_class, seed=self.seed)
        unlabeled = images
        if self.quick:
            unlabeled = images[: min(len(images), 4096)]
            test_images, test_labels = test_images[:2000], test_labels[:2000]
        return FewLabelImages(
            unlabeled=unlabeled,
            train=(images[train_idx], labels[train_idx]),
            val=(images[val_idx], labels[val_idx]),
            test=(test_images, test_labels),
            class_names=CLASS_NAMES,
        )

    def new_encoder(self):
        return ViTEncoder(**self.encoder_config)

    def pretrain_model(self, num_images=60000):
        """A compiled `MaskedAutoencoder` on a fresh encoder, scheduled for `self.epochs`."""
        keras.utils.set_random_seed(self.seed)
        mae = MaskedAutoencoder(self.new_encoder(), seed=self.seed, **self.decoder_config)
        mae.build((None, 28, 28, 1))
        steps = self.epochs * -(-num_images // self.pretrain_batch_size)
        mae.compile(
            optimizer=make_adamw(mae, self.pretrain_learning_rate, steps, weight_decay=0.05, beta_2=0.95)
        )
        return mae

    def finetune_model(self, encoder=None, learning_rate=1e-3, layer_decay=0.75, head=None, num_labels=None):
        """A compiled classifier on a copy of `encoder` (a fresh one if None: from scratch).

        The encoder is copied so that several fine-tuning runs can start from
        the same pre-trained weights. `head` (a classifier, typically the linear
        probe) gives the starting head: linear probing then fine-tuning (LP-FT)
        keeps a random head from wrecking pre-trained features on few labels.
        """
        keras.utils.set_random_seed(self.seed + 1)
        encoder = encoder.copy() if encoder is not None else self.new_encoder()
        classifier = ImageClassifier(encoder, num_classes=len(CLASS_NAMES), class_names=CLASS_NAMES)
        classifier.build((None, 28, 28, 1))
        num_labels = num_labels or self.labels_per_class * len(CLASS_NAMES)
        return self.compile_classifier(classifier, learning_rate, layer_decay, 0.05, num_labels, head)

    def linear_probe(self, encoder, data):
        """Logistic regression on the frozen encoder's pooled embeddings, as a Keras classifier.

        `C` is chosen on validation; the fitted weights become the classifier's
        head, so the probe exports like any other classifier.
        Returns `(val_accuracy, classifier)`.
        """
        probe = ImageClassifier(encoder.copy(), num_classes=len(CLASS_NAMES), class_names=CLASS_NAMES)
        probe.build((None, 28, 28, 1))
        probe.encoder.trainable = False
        embed = lambda x: np.concatenate([ops.convert_to_numpy(probe.embed(x[i : i + 500])) for i in range(0, len(x), 500)])
        model, C, val_accuracy = fit_logistic_regression(
            (embed(data.train[0]), data.train[1]), (embed(data.val[0]), data.val[1]), self.probe_regularizations
        )
        probe.head.set_weights([model.coef_.T.astype("float32"), model.intercept_.astype("float32")])
        probe.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        self.log(f"  linear probe: C {C:g} -> val {100 * val_accuracy:.2f}%")
        return val_accuracy, probe

    def select_on_validation(self, label, data, grid, encoder=None, head=None):
        """Train one classifier per grid point; keep the best on validation."""
        new_model = lambda lr, decay: self.finetune_model(encoder, lr, decay, head, num_labels=len(data.train[1]))
        return self.fit_best_on_validation(label, grid, new_model, data.train, data.val)

    def run(self):
        data = self.load_data()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.log(
            f"{self.name} on {keras.backend.backend()}: pre-training on {len(data.unlabeled)} unlabeled images, "
            f"{len(data.train[1])} labels for fine-tuning, {len(data.val[1])} for validation, "
            f"{len(data.test[1])} test images"
        )
        with self.distribution.scope():
            mae = self.pretrain_model(num_images=len(data.unlabeled))
            start = time.time()
            history = mae.fit(
                **self.distribution.fit_arguments(data.unlabeled, self.pretrain_batch_size, seed=self.seed),
                epochs=self.epochs,
                verbose=self.verbose,
            )
        pretrain_seconds = time.time() - start
        if not self.distribution.is_chief:
            return None  # only pre-training is distributed; the chief does the rest
        losses = history.history["loss"]
        mae.encoder.save(self.output_dir / "encoder.keras")
        plots.plot_loss_curve(losses, self.output_dir / "pretrain_loss.png")
        shown = mae.reconstruct(data.test[0][:8])
        plots.plot_reconstructions(shown["masked"], shown["reconstruction"], shown["original"],
                                   self.output_dir / "reconstructions.png")

        self.log("Fitting the baseline and the classifiers; hyperparameters chosen on validation:")
        baseline, baseline_C, _ = fit_logistic_regression(*((flatten_pixels(x), y) for x, y in (data.train, data.val)))
        baseline_accuracy = float(baseline.score(flatten_pixels(data.test[0]), data.test[1]))
        evaluate = lambda model: float(model.evaluate(*data.test, batch_size=500, verbose=0)[1])
        scratch_val, scratch = self.select_on_validation("scratch", data, self.scratch_grid)
        probe_val, probe = self.linear_probe(mae.encoder, data)
        finetune_val, finetuned = self.select_on_validation("fine-tune", data, self.finetune_grid, mae.encoder, probe)
        pretrained, comparison = self.compare(
            ("pixels", baseline_accuracy), scratch, finetuned, probe,
            {"scratch": scratch_val, "fine-tune": finetune_val, "linear probe": probe_val}, evaluate,
            f"{self.labels_per_class} labels per class", f"Fashion-MNIST, {self.labels_per_class} labels per class",
        )
        finetune_seconds = time.time() - start - pretrain_seconds
        export = self.export_classifier(pretrained, data.test[0][:64], comparison["pretrained_protocol"])
        results = {
            "labels_per_class": self.labels_per_class,
            **comparison,
            "baseline_C": baseline_C,
            "pretrain_epochs": self.epochs,
            "pretrain_final_loss": losses[-1],
            "pretrain_seconds": pretrain_seconds,
            "pretrain_images_per_second": self.epochs * len(data.unlabeled) / pretrain_seconds,
            "finetune_seconds": finetune_seconds,
            "encoder_path": str(self.output_dir / "encoder.keras"),
            **export,
            "quick": self.quick,
        }
        path = self.write_results(results)
        self.log(f"Wrote {path} and plots in {self.output_dir}")
        return results

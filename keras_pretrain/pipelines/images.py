"""The image pipeline: masked image modeling on any images, then few-label classification and export.

Example (a folder with one subfolder per class):
>>> from keras_pretrain.pipelines import ImagePipelineConfig, ImagePipeline
>>> config = ImagePipelineConfig(name="pets", data=ImageDataConfig(labelled="photos/", image_size=32))
>>> results = ImagePipeline(config).run()        # pre-train, evaluate on few labels, export
>>> results["pretrained_accuracy"], results["baseline_accuracy"]
"""

import dataclasses
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_pretrain import plots
from keras_pretrain.baselines import flatten_pixels
from keras_pretrain.checkpoints import load_keras_file
from keras_pretrain.config import check, check_divisible, check_fraction, check_sizes, override
from keras_pretrain.data.images import image_source
from keras_pretrain.data.splits import split_labelled
from keras_pretrain.evaluation import EvaluationConfig, FewLabelSplits, FewLabelTask, LabelPool, Split
from keras_pretrain.models import ImageClassifier, ViTEncoder
from keras_pretrain.objectives import LatentMaskedPrediction, MaskedAutoencoder, SimMIM
from keras_pretrain.pipelines.base import ExportConfig, Pipeline, PipelineData, PretrainConfig, counted, dtype_policy
from keras_pretrain.throughput import Throughput


@dataclasses.dataclass
class ImageDataConfig:
    """Where the images come from. Sources are specs `image_source` reads.

    `labelled`: a folder with one subfolder per class, `tfds:NAME[:SPLIT]`,
    `fashion_mnist[:test]`, or a `.npz` with `images` and `labels`.
    `unlabeled`: more sources for pre-training only (a flat folder works).
    `test`: a labelled test set; without it a stratified test split is held
    out of `labelled` (see `EvaluationConfig`) and kept out of pre-training.
    Images are converted to `channels` (None: 3 if any image has colour, else
    1) and resized to `image_size` squared (None: the data's own size if its
    images are square and all alike, else the smallest side, in both cases at
    most 64 and a multiple of 4).

    Example:
    >>> ImageDataConfig(labelled="photos/", unlabeled=["more_photos/"], image_size=32, flips=True)
    """

    labelled: str = ""
    unlabeled: list[str] = dataclasses.field(default_factory=list)
    test: str | None = None
    image_size: int | None = None
    channels: int | None = None
    data_dir: str | None = None  # where fashion_mnist and TFDS data sets are looked for
    download: bool = True  # let TFDS download a data set it does not have
    pretrain_on_labelled: bool = True  # the labelled set's images (minus held-out ones) are pre-training data too
    max_pretrain_examples: int | None = None  # the first N pre-training images only (smoke runs)
    flips: bool = False  # whether a mirrored image is still an image of its class (augmentation may flip)
    pretrain_augment: bool = False  # shift (and flip, with `flips`) pre-training images as fine-tuning does

    def __post_init__(self):
        check(self.image_size is None or self.image_size >= 1, f"data.image_size must be at least 1; got {self.image_size}.")
        check(self.channels in (None, 1, 3), f"data.channels must be 1 (grey), 3 (RGB) or None (from the data); "
              f"got {self.channels}.")


SINE_COSINE = " (a sine-cosine position table needs a multiple of 4)"


@dataclasses.dataclass
class ViTConfig:
    """`ViTEncoder` size; the image size and channels come from the data.

    `patch_size` None: a 4 x 4 grid of patches for images under 32 pixels, 8 x 8
    from 32 pixels on (where the side divides by 8).

    Example:
    >>> ViTConfig(patch_size=4, hidden_dim=192, depth=6, num_heads=3)  # hidden_dim divisible by num_heads and 4
    """

    patch_size: int | None = None
    hidden_dim: int = 128
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: int = 2

    def __post_init__(self):
        check_sizes(self, "encoder", ("patch_size", "hidden_dim", "depth", "num_heads", "mlp_ratio"))
        check_divisible(self, "encoder", "hidden_dim", "num_heads")
        check_divisible(self, "encoder", "hidden_dim", 4, SINE_COSINE)


@dataclasses.dataclass
class MaeConfig:
    """`MaskedAutoencoder` options: decoder size, masking, loss target.

    Example:
    >>> ImagePipelineConfig(objective="mae", mae=MaeConfig(decoder_dim=128, mask_ratio=0.6, norm_pix_loss=True))
    """

    decoder_dim: int = 64
    decoder_depth: int = 1
    decoder_heads: int = 2
    mask_ratio: float = 0.75
    norm_pix_loss: bool = False

    def __post_init__(self):
        check_sizes(self, "mae", ("decoder_dim", "decoder_heads"))
        check_sizes(self, "mae", ("decoder_depth",), at_least=0)
        check_divisible(self, "mae", "decoder_dim", 4, SINE_COSINE)
        check_fraction(self.mask_ratio, "mae.mask_ratio")


@dataclasses.dataclass
class SimMimConfig:
    """`SimMIM` options: masking in square blocks of patches.

    Example:
    >>> ImagePipelineConfig(objective="simmim", simmim=SimMimConfig(mask_ratio=0.5, mask_block=1))
    """

    mask_ratio: float = 0.6
    mask_block: int = 2

    def __post_init__(self):
        check_sizes(self, "simmim", ("mask_block",))
        check_fraction(self.mask_ratio, "simmim.mask_ratio")


@dataclasses.dataclass
class LatentConfig:
    """`LatentMaskedPrediction` options: predictor size, masking, targets, teacher momentum.

    Example:
    >>> ImagePipelineConfig(objective="latent", latent=LatentConfig(target_layers=1, momentum=0.99))
    """

    predictor_dim: int = 64
    predictor_depth: int = 1
    predictor_heads: int = 2
    mask_ratio: float = 0.75
    mask_block: int = 1
    target_layers: int = 2
    momentum: float = 0.996
    final_momentum: float = 1.0

    def __post_init__(self):
        check_sizes(self, "latent", ("predictor_dim", "predictor_heads", "mask_block", "target_layers"))
        check_sizes(self, "latent", ("predictor_depth",), at_least=0)
        check_divisible(self, "latent", "predictor_dim", 4, SINE_COSINE)
        check_fraction(self.mask_ratio, "latent.mask_ratio")
        check(0 <= self.momentum <= self.final_momentum <= 1, "latent.momentum and latent.final_momentum need "
              f"0 <= momentum <= final_momentum <= 1; got {self.momentum} and {self.final_momentum}.")


def image_augmentation(flips=False):
    """`(images, training=True) -> images` for batches inside `tf.data`: random shifts of up to an eighth of the
    side (a padded random crop), and mirror images if `flips`.

    Keras's preprocessing layers switch to TensorFlow inside `tf.data` alone,
    so it applies them layer by layer rather than as a `Sequential`.

    Example:
    >>> augment = image_augmentation(flips=True)
    >>> batches = tf.data.Dataset.from_tensor_slices(images).batch(32).map(augment)
    """
    layers = [keras.layers.RandomTranslation(0.125, 0.125, fill_mode="constant")]
    if flips:
        layers.append(keras.layers.RandomFlip("horizontal"))

    def augment(images, training=True):
        for layer in layers:
            images = layer(images, training=training)
        return images

    return augment


OBJECTIVES = {"mae": MaskedAutoencoder, "simmim": SimMIM, "latent": LatentMaskedPrediction}


@dataclasses.dataclass
class ImagePipelineConfig:
    """Everything an image pipeline run needs; `keras-pretrain show NAME` prints it, `--set KEY=VALUE` changes it.

    Example:
    >>> config = ImagePipelineConfig(name="pets", data=ImageDataConfig(labelled="photos/"), objective="simmim")
    >>> print(to_json(config))  # every field, as `keras-pretrain show` prints a recipe
    """

    name: str = "mae_images"
    data: ImageDataConfig = dataclasses.field(default_factory=ImageDataConfig)
    encoder: ViTConfig = dataclasses.field(default_factory=ViTConfig)
    objective: str = "mae"  # mae, simmim or latent: which of the three sections below is used
    mae: MaeConfig = dataclasses.field(default_factory=MaeConfig)
    simmim: SimMimConfig = dataclasses.field(default_factory=SimMimConfig)
    latent: LatentConfig = dataclasses.field(default_factory=LatentConfig)
    # Ten minutes of updates, whatever the data size (on Fashion-MNIST: about 40 epochs on 2 cores, which gave
    # 73.2% validation accuracy with 10 labels per class against 70.7% after 12 epochs; recipes/README.md).
    pretrain: PretrainConfig = dataclasses.field(default_factory=lambda: PretrainConfig(budget_minutes=10))
    # Random shifts while fine-tuning: 73.2% against 72.8% validation accuracy on that encoder.
    evaluation: EvaluationConfig = dataclasses.field(default_factory=lambda: EvaluationConfig(augment=True))
    pooling: str = "mean"  # the classifiers' pooling of the encoder's tokens: mean or flatten (ImageClassifier)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)
    output_dir: str | None = None  # default runs/NAME
    seed: int = 0
    smoke_run: bool = False  # set by --quick (apply_quick)
    # What --quick changes besides one pre-training epoch and one grid point each.
    quick: dict = dataclasses.field(default_factory=lambda: {
        "data.max_pretrain_examples": 4096,
        "evaluation.max_test": 2000,
        "evaluation.val_per_class": 20,
        "evaluation.finetune_epochs": 20,
    })

    def __post_init__(self):
        check(self.seed >= 0, f"seed must be a non-negative integer; got {self.seed}.")
        check(self.objective in OBJECTIVES, f"objective must be one of {', '.join(OBJECTIVES)}; got {self.objective!r}.")
        check(self.pooling in ImageClassifier.POOLINGS,
              f"pooling must be one of {', '.join(ImageClassifier.POOLINGS)}; got {self.pooling!r}.")


@dataclasses.dataclass
class PretrainingImages:
    """Pre-training data: `(source, indices)` parts, read as uint8 images of one shape."""

    parts: list
    image_shape: tuple

    def __len__(self):
        return sum(len(indices) for _, indices in self.parts)


class ImageTask(FewLabelTask):
    """Few-label classification of images with `ImageClassifier`; the baseline sees raw pixels."""

    baseline_name = "pixels"

    def __init__(self, new_encoder, image_shape, class_names, flips=False, pooling="mean"):
        self.new_encoder = new_encoder
        self.image_shape = tuple(image_shape)
        self.class_names = list(class_names)
        self.flips = flips
        self.pooling = pooling

    def baseline_features(self, inputs):
        return flatten_pixels(inputs)

    def augmentation(self):
        return image_augmentation(self.flips)

    def new_classifier(self, encoder=None, head=None):
        encoder = encoder.copy() if encoder is not None else self.new_encoder()
        classifier = ImageClassifier(encoder, num_classes=len(self.class_names), class_names=self.class_names, head=head,
                                     pooling=self.pooling)
        classifier.build((None, *self.image_shape))
        return classifier


class ImagePipeline(Pipeline):
    """Masked image modeling (`objective`: MAE, SimMIM or latent prediction) on any image sources; see
    `ImagePipelineConfig`.

    Example:
    >>> config = load_recipe("mae_images", ["data.labelled=photos/", "objective=simmim"])
    >>> results = ImagePipeline(config).run()
    """

    def load_data(self):
        """Read the sources, check every image decodes, draw the splits; nothing is written."""
        config = self.config.data
        if not config.labelled:
            raise ValueError("No labelled images: pass --data DIR (one subfolder per class) or set data.labelled.")
        open_source = lambda spec: image_source(spec, data_dir=config.data_dir, download=config.download)  # noqa: E731
        labelled = open_source(config.labelled)
        if not labelled.labelled:
            raise ValueError(
                f"{labelled.description} has no labels: give labelled data one subfolder per class "
                "(pass unlabeled images with --unlabeled)."
            )
        test = open_source(config.test) if config.test else None
        unlabeled = [open_source(spec) for spec in config.unlabeled]
        sources = [labelled, *([test] if test else []), *unlabeled]
        checks = [source.check() for source in sources]
        self.resolve_sizes(checks[0], max(check["channels"] for check in checks))
        config = self.config.data
        channels = config.channels
        image_shape = (config.image_size, config.image_size, channels)

        labels = labelled.labels()
        test_labels = None if test is None else self.test_labels(labelled, test)
        indices = split_labelled(labels, labelled.class_names, self.config.evaluation, self.config.seed, test_labels)
        split = lambda source, idx, source_labels: Split(  # noqa: E731
            source.load(config.image_size, channels, idx), source_labels[idx]
        )
        train, val = split(labelled, indices.train, labels), split(labelled, indices.val, labels)
        test_split = split(labelled, indices.test, labels) if test is None else split(test, indices.test, test_labels)

        parts = []
        if config.pretrain_on_labelled:
            parts.append((labelled, np.setdiff1d(np.arange(len(labelled)), indices.held_out)))
        parts += [(source, np.arange(len(source))) for source in unlabeled]
        parts = self.first_examples(parts, config.max_pretrain_examples)
        pretraining = PretrainingImages(parts, image_shape)
        if not len(pretraining):
            raise ValueError("No pre-training images: set data.pretrain_on_labelled=True or pass --unlabeled.")
        description = {
            "labelled": labelled.description,
            "test": test.description if test else "held out of the labelled images (stratified)",
            "test_carved": bool(indices.test_carved),
            "unlabeled": [source.description for source in unlabeled],
            "image_shape": list(image_shape),
            "pretraining_images": len(pretraining),
            "train": len(indices.train), "val": len(indices.val), "test_size": len(indices.test),
        }
        pool_indices = np.setdiff1d(np.arange(len(labelled)), np.union1d(indices.held_out, indices.val))
        pool = LabelPool(labels[pool_indices],
                         lambda idx: labelled.load(config.image_size, channels, pool_indices[np.asarray(idx)]))
        splits = FewLabelSplits(train, val, test_split, labelled.class_names, pool)
        return PipelineData(splits, pretraining, description)

    def resolve_sizes(self, stats, channels):
        """Fill in the image size, channels and patch size the config leaves open, from the labelled images' `stats`."""
        data, chosen = self.config.data, {}
        self.choices = []
        if data.image_size is None:
            (low_h, low_w), (high_h, high_w) = stats["min_size"], stats["max_size"]
            alike = low_h == low_w == high_h == high_w
            side = max(8, min(64, min(low_h, low_w)) // 4 * 4)
            chosen["data.image_size"] = side
            self.choices.append(f"images resized to {side}x{side} (data.image_size: "
                                f"{'their own size' if alike and side == low_h else 'from the smallest side, at most 64'})")
        if data.channels is None:
            chosen["data.channels"] = channels
            self.choices.append(f"{channels} channel{'s' if channels > 1 else ''} (data.channels: "
                                f"{'some images have colour' if channels == 3 else 'every image is grey'})")
        side = chosen.get("data.image_size", data.image_size)
        if self.config.encoder.patch_size is None:
            grid = 8 if side >= 32 and side % 8 == 0 else 4
            if side % grid:
                raise ValueError(f"data.image_size {side} does not split into a 4 x 4 or 8 x 8 grid: set "
                                 "encoder.patch_size to a divisor of it.")
            chosen["encoder.patch_size"] = side // grid
            self.choices.append(f"patches of {side // grid} pixels, a {grid}x{grid} grid (encoder.patch_size)")
        self.config = override(self.config, chosen)

    @staticmethod
    def test_labels(labelled, test):
        """The test set's labels as indices into the labelled set's class names (matched by name)."""
        if not test.labelled:
            raise ValueError(f"The test set {test.description} has no labels: give it one subfolder per class.")
        unknown = sorted(set(test.class_names) - set(labelled.class_names))
        if unknown:
            raise ValueError(f"The test set has classes the labelled data lacks: {unknown}; the class folders must match.")
        position = np.array([labelled.class_names.index(name) for name in test.class_names])
        return position[test.labels()]

    @staticmethod
    def first_examples(parts, limit):
        if limit is None:
            return parts
        kept = []
        for source, indices in parts:
            kept.append((source, indices[: max(0, limit)]))
            limit -= len(kept[-1][1])
        return [(source, indices) for source, indices in kept if len(indices)]

    def new_encoder(self, image_shape):
        return ViTEncoder(image_size=image_shape[0], channels=image_shape[2], **dataclasses.asdict(self.config.encoder))

    def task(self, data):
        shape = data.pretraining.image_shape
        return ImageTask(lambda: self.new_encoder(shape), shape, data.splits.class_names, self.config.data.flips,
                         self.config.pooling)

    def export_samples(self, data):
        return data.splits.test.inputs[:64]

    def pretraining_dataset(self, images, count_only=False):
        """This process's share of the pre-training images as shuffled batches, and the steps per pass.

        `count_only=True` returns the steps per pass alone (and builds nothing).
        """
        index, count = self.distribution.input_shard
        batch_size = self.distribution.local_batch_size(self.config.pretrain.batch_size)
        size, _, channels = images.image_shape
        shares = [(source, indices[index::count]) for source, indices in images.parts]
        sizes = [len(mine) for _, mine in shares]
        steps = self.distribution.agree_min(sum(sizes) // batch_size)
        if steps < 1:
            raise ValueError(
                f"{len(images)} pre-training images make no batch of {self.config.pretrain.batch_size}: "
                "lower pretrain.batch_size (--set pretrain.batch_size=N) or add images."
            )
        if count_only:
            return steps
        datasets = [
            source.dataset(size, channels, indices=mine, shuffle_seed=self.config.seed + part).repeat()
            for part, (source, mine) in enumerate(shares)
        ]
        if len(datasets) == 1:
            mixed = datasets[0]
        else:
            weights = [s / sum(sizes) for s in sizes]
            mixed = tf.data.Dataset.sample_from_datasets(datasets, weights=weights, seed=self.config.seed)
        batches = mixed.batch(batch_size, drop_remainder=True)
        if self.config.data.pretrain_augment:
            batches = batches.map(image_augmentation(self.config.data.flips))  # one call at a time: seeded state
        return batches.prefetch(tf.data.AUTOTUNE), steps

    def pretrain_model(self, image_shape, total_steps):
        """The compiled objective (`config.objective`) on a fresh encoder, its schedule `total_steps` long."""
        keras.utils.set_random_seed(self.config.seed)
        options = dataclasses.asdict(getattr(self.config, self.config.objective))
        if self.config.objective == "latent":
            options["momentum_steps"] = total_steps
        with dtype_policy(self.config.pretrain.dtype_policy):
            model = OBJECTIVES[self.config.objective](self.new_encoder(image_shape), seed=self.config.seed, **options)
            model.build((None, *image_shape))
        model.compile(optimizer=self.config.pretrain.optimizer(model, total_steps))
        return model

    def load_pretrained(self, data, finished):
        """The encoder an earlier run pre-trained, from its `encoder.keras` (in this output, wherever it has moved)."""
        path = self.output_dir / Path(finished["encoder_path"]).name
        self.log(f"Pre-training finished in an earlier run: loading its encoder from {path}")
        return load_keras_file(path, "pass --restart to start over.")

    def pretrain(self, data):
        images = data.pretraining
        splits = data.splits
        self.log(
            f"{self.config.name} on {keras.backend.backend()}: pre-training on {len(images)} images "
            f"{'x'.join(map(str, images.image_shape))}, {len(splits.train)} labels for fine-tuning, "
            f"{len(splits.val)} for validation, {len(splits.test)} test images"
            + (" (held out of the labelled images, stratified; not pre-trained on)" if data.description["test_carved"] else "")
        )
        new_dataset = lambda: self.new_dataset(lambda: self.pretraining_dataset(images)[0])  # noqa: E731
        steps_per_pass = self.pretraining_dataset(images, count_only=True)
        new_model = lambda total: self.pretrain_model(images.image_shape, total)  # noqa: E731
        epochs, steps, why = self.schedule(steps_per_pass, new_model, new_dataset)
        objective = self.config.objective
        self.log("Choices: " + "; ".join([
            *getattr(self, "choices", []),
            f"{counted(epochs * steps, 'step')} of {self.config.pretrain.batch_size} images = "
            f"{counted(epochs, 'epoch')} of {counted(steps, 'step')} "
            f"({why})",
            f"objective {objective}, mask ratio {getattr(self.config, objective).mask_ratio:g}",
        ]))
        with self.distribution.scope():
            model = self.pretrain_model(images.image_shape, epochs * steps)
            throughput = Throughput(self.config.pretrain.batch_size, model.flops_per_sample(),
                                    self.config.pretrain.peak_flops, unit="images")
            history, seconds, trained = self.fit_pretraining(model, new_dataset(), new_dataset, epochs, steps,
                                                             self.verbose, throughput)
        encoder = model.pretrained_encoder
        if not self.distribution.is_chief:
            return encoder, {}
        losses = history["loss"]
        encoder_path = self.output_dir / "encoder.keras"
        encoder.save(encoder_path)
        plots.plot_loss_curve(losses, self.output_dir / "pretrain_loss.png",
                              title=f"Pre-training loss ({self.config.objective})")
        if hasattr(model, "reconstruct"):
            shown = model.reconstruct(splits.test.inputs[:8])
            plots.plot_reconstructions(shown["masked"], shown["reconstruction"], shown["original"],
                                       self.output_dir / "reconstructions.png")
        seen = trained * self.config.pretrain.batch_size  # in `seconds`: a resumed run's own steps
        return encoder, {
            "objective": self.config.objective,
            "pretrain_epochs": epochs,
            "pretrain_steps": epochs * steps,
            "pretrain_final_loss": losses[-1],
            "pretrain_seconds": seconds,
            "pretrain_images_per_second": seen / seconds,
            "pretrain_mfu": seen / seconds * model.flops_per_sample() / throughput.peak_flops,
            "peak_flops": throughput.peak_flops,
            "encoder_path": str(encoder_path),
        }

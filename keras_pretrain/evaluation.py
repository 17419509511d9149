"""Few-label evaluation: what a pre-trained encoder buys over a simple baseline and over training from scratch.

Every model sees the same few labelled examples; every hyperparameter is
chosen on a validation split; the test split is used once, at the end:

- a simple strong baseline: logistic regression on raw features (pixels,
  TF-IDF), its `C` chosen on validation;
- the same classifier trained from scratch (a learning-rate grid);
- a linear probe: logistic regression on the frozen encoder's pooled
  embeddings, its weights copied into the classifier's head;
- fine-tuning from the probe's head (LP-FT) over a grid of learning rates
  and layer decays.

The recipe's answer is whichever use of the pre-trained encoder (probe or
fine-tuning) wins on validation. The modality enters only through a
`FewLabelTask`: how to build a classifier, what its inputs are, what the
baseline's features are.

Example:
>>> result = evaluate_few_labels(task, encoder, splits, EvaluationConfig(), output_dir="runs/mine")
>>> result.results["pretrained_accuracy"], result.chosen      # test accuracy, the chosen Keras classifier
"""

import dataclasses
from pathlib import Path

import keras
import numpy as np

from keras_pretrain import plots
from keras_pretrain.baselines import fit_logistic_regression
from keras_pretrain.config import check
from keras_pretrain.optimizers import make_adamw


@dataclasses.dataclass
class EvaluationConfig:
    """How labels are drawn and how classifiers are chosen on them.

    Splits: `labels_per_class` training labels and `val_per_class`
    validation examples per class. Without a separate test set, a stratified
    test split is held out first, with the fixed `split_seed` (so it does not
    move with the label draw's seed): `test_per_class` per class, or else
    `test_fraction` of each class capped at `max_test_per_class`.
    `max_test` keeps only the first examples of a given test set (smoke runs).
    """

    labels_per_class: int = 10
    val_per_class: int = 20
    test_per_class: int | None = None
    test_fraction: float = 0.2
    max_test_per_class: int = 1000
    max_test: int | None = None
    split_seed: int = 1234
    finetune_epochs: int = 100
    finetune_batch_size: int = 32
    finetune_weight_decay: float = 0.05
    # (learning rate, layer decay or None) points tried on validation.
    finetune_grid: list[tuple[float, float | None]] = dataclasses.field(
        default_factory=lambda: [(1e-3, 0.75), (3e-4, 0.75)]
    )
    scratch_grid: list[tuple[float, float | None]] = dataclasses.field(
        default_factory=lambda: [(1e-3, None), (3e-4, None)]
    )
    probe_regularizations: list[float] = dataclasses.field(default_factory=lambda: [0.01, 0.1, 1.0, 10.0])
    baseline_regularizations: list[float] = dataclasses.field(default_factory=lambda: [0.01, 0.1, 1.0, 10.0])

    def __post_init__(self):
        check(self.labels_per_class >= 1, f"labels per class must be at least 1; got {self.labels_per_class}.")
        check(self.val_per_class >= 1, f"evaluation.val_per_class must be at least 1; got {self.val_per_class}.")
        check(0.0 < self.test_fraction < 1.0, f"evaluation.test_fraction must lie in (0, 1); got {self.test_fraction}.")
        check(self.finetune_epochs >= 1 and self.finetune_batch_size >= 1,
              "evaluation.finetune_epochs and evaluation.finetune_batch_size must be at least 1.")
        check(self.finetune_grid and self.scratch_grid, "evaluation.finetune_grid and scratch_grid need a point each.")


class FewLabelTask:
    """What the evaluation needs to know about a modality. Subclass it for a new kind of input.

    Example (images):
    >>> class Images(FewLabelTask):
    ...     baseline_name = "pixels"
    ...     def baseline_features(self, inputs): return flatten_pixels(inputs)
    ...     def new_classifier(self, encoder=None): ...  # a built ImageClassifier
    """

    baseline_name = "raw features"

    def fit_baseline_features(self, train_inputs):
        """Fit whatever the baseline's features need (a vocabulary); default: nothing."""

    def baseline_features(self, inputs):
        """A 2-D feature matrix (numpy or scipy sparse) for logistic regression."""
        raise NotImplementedError

    def classifier_inputs(self, inputs):
        """Raw inputs -> what the classifier's `fit` takes (default: unchanged)."""
        return inputs

    def new_classifier(self, encoder=None):
        """A built classifier on a copy of `encoder` (None: a fresh encoder, from scratch), not compiled.

        It must have `embed(inputs)` (pooled features) and a Dense `head`, and,
        for layer decay, `layer_id(variable_path)`.
        """
        raise NotImplementedError


@dataclasses.dataclass
class Split:
    """`inputs` (an array, a list of strings, or a dict of arrays) and int `labels`."""

    inputs: object
    labels: np.ndarray

    def __len__(self):
        return len(self.labels)


@dataclasses.dataclass
class FewLabelSplits:
    train: Split
    val: Split
    test: Split
    class_names: list


@dataclasses.dataclass
class EvaluationResult:
    chosen: keras.Model  # the classifier of the protocol chosen on validation
    protocol: str  # "fine-tune" or "linear probe"
    results: dict  # the accuracy keys of results.json


def compile_classifier(classifier, learning_rate, layer_decay, weight_decay, total_steps, head=None):
    """Compile a built classifier with AdamW (warmup-cosine over `total_steps`); return it.

    `head` (a classifier, typically the linear probe) gives the starting
    head: linear probing then fine-tuning (LP-FT) keeps a random head from
    wrecking pre-trained features on few labels.

    Example:
    >>> compile_classifier(classifier, 1e-3, 0.75, 0.05, total_steps=400, head=probe)
    """
    if head is not None:
        classifier.head.set_weights(head.head.get_weights())
    classifier.compile(
        optimizer=make_adamw(classifier, learning_rate, total_steps, weight_decay=weight_decay, layer_decay=layer_decay),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return classifier


def embed(classifier, inputs, batch_size=256):
    """The classifier's pooled embeddings of `inputs` as one numpy array, computed in batches."""
    count = len(keras.tree.flatten(inputs)[0])
    chunks = []
    for start in range(0, count, batch_size):
        batch = keras.tree.map_structure(lambda x: x[start : start + batch_size], inputs)
        chunks.append(keras.ops.convert_to_numpy(classifier.embed(batch)))
    return np.concatenate(chunks)


def softmax_weights(model):
    """A fitted scikit-learn logistic regression as the `[kernel, bias]` of a Dense softmax head.

    With two classes scikit-learn keeps one row of weights (the logit of
    class 1); split in half and opposite, it gives the same probabilities.
    """
    coef, intercept = model.coef_.astype("float32"), model.intercept_.astype("float32")
    if len(model.classes_) == 2:
        coef, intercept = np.concatenate([-coef, coef]) / 2, np.concatenate([-intercept, intercept]) / 2
    return [coef.T, intercept]


class FewLabelEvaluation:
    """Runs the comparison; `evaluate_few_labels` is the one-call form.

    Args:
        task: a `FewLabelTask`.
        splits: `FewLabelSplits` with raw inputs.
        config: an `EvaluationConfig`.
        log: where progress lines go (`print`, or a no-op).
        seed: seed of every classifier's initialisation.
    """

    def __init__(self, task, splits, config, log=print, seed=0):
        self.task = task
        self.splits = splits
        self.config = config
        self.log = log
        self.seed = seed
        self.features = {
            name: Split(task.classifier_inputs(split.inputs), split.labels)
            for name, split in (("train", splits.train), ("val", splits.val), ("test", splits.test))
        }

    def classifier(self, encoder=None, learning_rate=None, layer_decay=None, head=None):
        """A compiled classifier on a copy of `encoder` (None: from scratch) for this label budget.

        Without a `learning_rate`, the first point of the fine-tuning grid (or
        the scratch grid) sets it and the layer decay.
        """
        if learning_rate is None:
            learning_rate, layer_decay = (self.config.scratch_grid if encoder is None else self.config.finetune_grid)[0]
        keras.utils.set_random_seed(self.seed + 1)
        classifier = self.task.new_classifier(encoder)
        steps = self.config.finetune_epochs * -(-len(self.splits.train) // self.config.finetune_batch_size)
        return compile_classifier(
            classifier, learning_rate, layer_decay, self.config.finetune_weight_decay, steps, head
        )

    def baseline(self):
        """Logistic regression on the task's raw features: `(test_accuracy, C)`."""
        self.task.fit_baseline_features(self.splits.train.inputs)
        train, val, test = (
            (self.task.baseline_features(split.inputs), split.labels)
            for split in (self.splits.train, self.splits.val, self.splits.test)
        )
        model, C, _ = fit_logistic_regression(train, val, self.config.baseline_regularizations)
        return float(model.score(*test)), C

    def linear_probe(self, encoder):
        """Logistic regression on frozen pooled embeddings, as a classifier: `(val_accuracy, classifier)`.

        `C` is chosen on validation; the fitted weights become the head, so the
        probe exports like any other classifier.
        """
        probe = self.classifier(encoder)
        features = {name: (embed(probe, split.inputs), split.labels) for name, split in self.features.items()}
        model, C, val_accuracy = fit_logistic_regression(
            features["train"], features["val"], self.config.probe_regularizations
        )
        probe.head.set_weights(softmax_weights(model))
        self.log(f"  linear probe: C {C:g} -> val {100 * val_accuracy:.2f}%")
        return val_accuracy, probe

    def best_on_validation(self, label, grid, encoder=None, head=None):
        """Fit one classifier per `(learning rate, layer decay)` point; keep the best on validation."""
        best = None
        train, val = self.features["train"], self.features["val"]
        for learning_rate, layer_decay in grid:
            model = self.classifier(encoder, learning_rate, layer_decay, head)
            model.fit(train.inputs, train.labels, batch_size=self.config.finetune_batch_size,
                      epochs=self.config.finetune_epochs, verbose=0)
            val_accuracy = float(model.evaluate(val.inputs, val.labels, batch_size=256, verbose=0)[1])
            self.log(f"  {label}: lr {learning_rate:g}, layer decay {layer_decay} -> val {100 * val_accuracy:.2f}%")
            if best is None or val_accuracy > best[0]:
                best = (val_accuracy, model)
        return best

    def test_accuracy(self, model):
        test = self.features["test"]
        return float(model.evaluate(test.inputs, test.labels, batch_size=256, verbose=0)[1])

    def run(self, encoder, title="", output_dir=None):
        """Baseline, scratch, probe and fine-tuning; print the table, plot it; return an `EvaluationResult`."""
        self.log("Fitting the baseline and the classifiers; hyperparameters chosen on validation:")
        baseline_accuracy, baseline_C = self.baseline()
        scratch_val, scratch = self.best_on_validation("scratch", self.config.scratch_grid)
        probe_val, probe = self.linear_probe(encoder)
        finetune_val, finetuned = self.best_on_validation("fine-tune", self.config.finetune_grid, encoder, probe)
        protocol = "fine-tune" if finetune_val >= probe_val else "linear probe"
        baseline_name = f"logistic regression ({self.task.baseline_name})"
        accuracies = {
            baseline_name: baseline_accuracy,
            "scratch": self.test_accuracy(scratch),
            "pre-trained, fine-tuned": self.test_accuracy(finetuned),
            "pre-trained, linear probe": self.test_accuracy(probe),
        }
        chosen = accuracies["pre-trained, fine-tuned" if protocol == "fine-tune" else "pre-trained, linear probe"]
        rows = {**accuracies, f"pre-trained ({protocol}, chosen on validation)": chosen}
        width = max(map(len, rows))
        self.log(f"\nTest accuracy, {title} ({keras.backend.backend()})")
        for name, accuracy in rows.items():
            self.log(f"  {name:<{width}}  {100 * accuracy:6.2f}%")
        self.log(f"  gain over scratch: {100 * (chosen - accuracies['scratch']):+.2f} points; "
                 f"over logistic regression: {100 * (chosen - baseline_accuracy):+.2f} points")
        if output_dir is not None:
            plots.plot_accuracies(accuracies, Path(output_dir) / "accuracies.png", title=title)
        results = {
            "baseline_accuracy": baseline_accuracy,
            "baseline_C": baseline_C,
            "scratch_accuracy": accuracies["scratch"],
            "finetune_accuracy": accuracies["pre-trained, fine-tuned"],
            "probe_accuracy": accuracies["pre-trained, linear probe"],
            "pretrained_accuracy": chosen,
            "pretrained_protocol": protocol,
            "validation_accuracy": {"scratch": scratch_val, "fine-tune": finetune_val, "linear probe": probe_val},
            "test_size": len(self.splits.test),
        }
        return EvaluationResult(finetuned if protocol == "fine-tune" else probe, protocol, results)


def evaluate_few_labels(task, encoder, splits, config=None, log=print, seed=0, title="", output_dir=None):
    """Compare a pre-trained `encoder` with a baseline and with scratch training on few labels.

    Returns an `EvaluationResult`: the classifier chosen on validation, its
    protocol, and the result keys (test accuracies, validation accuracies,
    the baseline's `C`). With `output_dir`, also writes `accuracies.png` there.

    Example:
    >>> result = evaluate_few_labels(ImageTask(encoder_config, class_names), mae.encoder, splits)
    >>> result.chosen.save("classifier.keras")
    """
    evaluation = FewLabelEvaluation(task, splits, config or EvaluationConfig(), log=log, seed=seed)
    return evaluation.run(encoder, title=title, output_dir=output_dir)

"""Few-label evaluation: what a pre-trained encoder buys over a simple baseline and over training from scratch.

Every model sees the same few labelled examples; every hyperparameter is
chosen on a validation split; the test split is used once, at the end:

- a simple strong baseline: logistic regression on raw features (pixels,
  TF-IDF), its `C` chosen on validation;
- the same classifier trained from scratch (a learning-rate grid);
- a linear probe: logistic regression on the frozen encoder's pooled
  embeddings, its weights copied into the classifier's head;
- k nearest neighbours on the frozen embeddings (cosine similarity,
  temperature-weighted votes), `k` chosen on validation;
- fine-tuning from the probe's head (LP-FT) over a grid of learning rates
  and layer decays, with augmentation, mixup and label smoothing as options.

The answer is whichever use of the pre-trained encoder (fine-tuning, probe or
kNN) wins on validation. A label-efficiency curve repeats the probe and kNN
(and the baseline) for several label counts and label draws, for the
pre-trained encoder and a randomly initialised one. The modality enters only
through a `FewLabelTask`.

Example:
>>> result = evaluate_few_labels(task, encoder, splits, EvaluationConfig(), output_dir="runs/mine")
>>> result.results["pretrained_accuracy"], result.chosen      # test accuracy, the chosen Keras classifier
"""

import dataclasses
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_pretrain import plots
from keras_pretrain.baselines import fit_logistic_regression, fit_logistic_regressions
from keras_pretrain.config import check
from keras_pretrain.data.splits import few_label_split
from keras_pretrain.models.knn import KnnHead, knn_probabilities
from keras_pretrain.optimizers import make_adamw

PROTOCOLS = ("fine-tune", "linear probe", "kNN")  # ties go to the first


@dataclasses.dataclass
class EvaluationConfig:
    """How labels are drawn and how classifiers are chosen on them.

    Splits: `labels_per_class` training labels and `val_per_class`
    validation examples per class. Without a separate test set, a stratified
    test split is held out first, with the fixed `split_seed` (so it does not
    move with the label draw's seed): `test_per_class` per class, or else
    `test_fraction` of each class capped at `max_test_per_class`.
    `max_test` keeps only the first examples of a given test set (smoke runs).

    Fine-tuning options: `augment` (random shifts and crops of images),
    `mixup` (the Beta distribution's alpha; 0 is off), `label_smoothing`.
    The label-efficiency curve draws `curve_seeds` label sets for each of
    `curve_labels_per_class` (counts a class cannot supply are skipped; an
    empty list turns the curve off).

    Example:
    >>> EvaluationConfig(labels_per_class=5, finetune_grid=[(1e-3, 0.75)], curve_labels_per_class=[])  # no curve
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
    augment: bool = False
    mixup: float = 0.0
    label_smoothing: float = 0.0
    probe_regularizations: list[float] = dataclasses.field(default_factory=lambda: [0.01, 0.1, 1.0, 10.0])
    baseline_regularizations: list[float] = dataclasses.field(default_factory=lambda: [0.01, 0.1, 1.0, 10.0])
    knn_neighbors: list[int] = dataclasses.field(default_factory=lambda: [5, 10, 20])
    knn_temperature: float = 0.07
    curve_labels_per_class: list[int] = dataclasses.field(default_factory=lambda: [1, 5, 10, 25, 100])
    curve_seeds: int = 3

    def __post_init__(self):
        check(self.labels_per_class >= 1, f"labels per class must be at least 1; got {self.labels_per_class}.")
        check(self.val_per_class >= 1, f"evaluation.val_per_class must be at least 1; got {self.val_per_class}.")
        check(0.0 < self.test_fraction < 1.0, f"evaluation.test_fraction must lie in (0, 1); got {self.test_fraction}.")
        check(self.finetune_epochs >= 1 and self.finetune_batch_size >= 1,
              "evaluation.finetune_epochs and evaluation.finetune_batch_size must be at least 1.")
        check(self.finetune_grid and self.scratch_grid, "evaluation.finetune_grid and scratch_grid need a point each.")
        check(self.knn_neighbors and min(self.knn_neighbors) >= 1, "evaluation.knn_neighbors needs values of 1 or more.")
        check(self.mixup >= 0 and 0 <= self.label_smoothing < 1, "evaluation.mixup must be >= 0, label_smoothing in [0, 1).")
        check(self.curve_seeds >= 1, f"evaluation.curve_seeds must be at least 1; got {self.curve_seeds}.")


class FewLabelTask:
    """What the evaluation needs to know about a modality. Subclass it for a new kind of input.

    Example (images):
    >>> class Images(FewLabelTask):
    ...     baseline_name = "pixels"
    ...     def baseline_features(self, inputs): return flatten_pixels(inputs)
    ...     def new_classifier(self, encoder=None, head=None): ...  # a built ImageClassifier
    """

    baseline_name = "raw features"
    mixable = True  # whether mixup can blend two inputs

    def fit_baseline_features(self, train_inputs):
        """Fit whatever the baseline's features need (a vocabulary); default: nothing."""

    def baseline_features(self, inputs):
        """A 2-D feature matrix (numpy or scipy sparse) for logistic regression."""
        raise NotImplementedError

    def classifier_inputs(self, inputs):
        """Raw inputs -> what the classifier's `fit` takes (default: unchanged)."""
        return inputs

    def augmentation(self):
        """A function `(batch, training=True) -> batch` that augments classifier inputs inside `tf.data` while
        fine-tuning (Keras preprocessing layers work there on every backend), or None (the default)."""
        return None

    def new_classifier(self, encoder=None, head=None):
        """A built classifier on a copy of `encoder` (None: a fresh encoder, from scratch), not compiled.

        It must have `embed(inputs)` (pooled features) and a `head` (`head`
        if given, else a Dense layer), and, for layer decay, `layer_id(variable_path)`.
        """
        raise NotImplementedError


@dataclasses.dataclass
class Split:
    """`inputs` (an array, a list of strings, or a dict of arrays) and int `labels`.

    Example:
    >>> len(Split(["a fine film", "dull"], np.array([1, 0])))
    2
    """

    inputs: object
    labels: np.ndarray

    def __len__(self):
        return len(self.labels)


@dataclasses.dataclass
class LabelPool:
    """The labelled examples the label-efficiency curve draws from: their labels and how to load some.

    Example:
    >>> pool = LabelPool(labels, lambda indices: images[indices])
    >>> splits = FewLabelSplits(train, val, test, class_names, pool)
    """

    labels: np.ndarray
    load: object  # indices -> raw inputs


@dataclasses.dataclass
class FewLabelSplits:
    """The few labels to train on, the validation set that picks a protocol, the test set, and the class names.

    Example:
    >>> splits = FewLabelSplits(Split(x[train], y[train]), Split(x[val], y[val]), Split(x_test, y_test), ["cat", "dog"])
    """

    train: Split
    val: Split
    test: Split
    class_names: list
    pool: LabelPool | None = None


@dataclasses.dataclass
class EvaluationResult:
    """What `evaluate_few_labels` returns: the classifier chosen on validation, its protocol, and every accuracy.

    Example:
    >>> result = evaluate_few_labels(task, encoder, splits)
    >>> result.protocol, result.results["pretrained_accuracy"]
    """

    chosen: keras.Model  # the classifier of the protocol chosen on validation
    protocol: str  # "fine-tune", "linear probe" or "kNN"
    results: dict  # the accuracy keys of results.json


def compile_classifier(classifier, learning_rate, layer_decay, weight_decay, total_steps, head=None, label_smoothing=0.0):
    """Compile a built classifier with AdamW (warmup-cosine over `total_steps`) on one-hot labels; return it.

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
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    return classifier


class _Embedding(keras.Model):
    """A classifier's `embed` as a model of its own, so that `predict` runs it compiled, on every backend."""

    def __init__(self, classifier):
        super().__init__(name="embedding")  # TensorFlow refuses the default name, "__embedding", as a scope
        self.classifier = classifier

    def call(self, inputs):
        return self.classifier.embed(inputs)


def embed(classifier, *inputs, batch_size=256):
    """The classifier's pooled embeddings of each of `inputs`, as numpy arrays, computed in batches.

    Example:
    >>> train, test = embed(classifier, train_images, test_images)
    """
    counts = [len(keras.tree.flatten(x)[0]) for x in inputs]
    total = sum(counts)
    padding = -total % batch_size  # every batch one shape: one compilation
    joined = keras.tree.map_structure(
        lambda *parts: np.concatenate([*parts, np.repeat(parts[-1][-1:], padding, axis=0)]), *inputs
    )
    embeddings = np.asarray(_Embedding(classifier).predict(joined, batch_size=batch_size, verbose=0))
    return np.split(embeddings[:total], np.cumsum(counts)[:-1])


def softmax_weights(model):
    """A fitted scikit-learn logistic regression as the `[kernel, bias]` of a Dense softmax head.

    With two classes scikit-learn keeps one row of weights (the logit of
    class 1); split in half and opposite, it gives the same probabilities.

    Example:
    >>> model, C, val_accuracy = fit_logistic_regression((train_embeddings, y_train), (val_embeddings, y_val))
    >>> classifier.head.set_weights(softmax_weights(model))  # the linear probe as the classifier's head
    """
    coef, intercept = model.coef_.astype("float32"), model.intercept_.astype("float32")
    if len(model.classes_) == 2:
        coef, intercept = np.concatenate([-coef, coef]) / 2, np.concatenate([-intercept, intercept]) / 2
    return [coef.T, intercept]


def fit_knn(train, val, num_classes, neighbors, temperature):
    """`(k, val_accuracy)`: the number of neighbours that does best on validation. `train`, `val`: (embeddings, labels).

    Example:
    >>> k, val_accuracy = fit_knn((x_train, y_train), (x_val, y_val), 10, neighbors=[5, 10, 20], temperature=0.07)
    """
    best = None
    for k in sorted({min(k, len(train[1])) for k in neighbors}):
        accuracy = float((knn_probabilities(*train, val[0], num_classes, k, temperature).argmax(1) == val[1]).mean())
        if best is None or accuracy > best[1]:
            best = (k, accuracy)
    return best


class FewLabelEvaluation:
    """Runs the comparison; `evaluate_few_labels` is the one-call form.

    Args:
        task: a `FewLabelTask`.
        splits: `FewLabelSplits` with raw inputs.
        config: an `EvaluationConfig`.
        log: where progress lines go (`print`, or a no-op).
        seed: seed of every classifier's initialisation.
        store: keeps each fine-tuned classifier (`load(key)` -> `(val_accuracy,
            model)` or None, `save(key, val_accuracy, model)`), so a rerun
            skips the ones already trained; None trains every one.
    """

    def __init__(self, task, splits, config, log=print, seed=0, store=None):
        self.task = task
        self.splits = splits
        self.config = config
        self.log = log
        self.seed = seed
        self.store = store
        self.num_classes = len(splits.class_names)
        if config.mixup and not task.mixable:
            raise ValueError(f"evaluation.mixup blends inputs, which {type(task).__name__} cannot: set it to 0.")
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
        return compile_classifier(classifier, learning_rate, layer_decay, self.config.finetune_weight_decay,
                                  self.finetune_steps, head, self.config.label_smoothing)

    @property
    def finetune_steps(self):
        """Fine-tuning's training steps: `finetune_epochs` passes over the training labels."""
        return self.config.finetune_epochs * -(-len(self.splits.train) // self.config.finetune_batch_size)

    def one_hot(self, labels):
        return np.eye(self.num_classes, dtype="float32")[labels]

    def training_data(self):
        """The fine-tuning batches, endlessly: shuffled anew every epoch, augmented and mixed up as configured."""
        train = self.features["train"]
        dataset = tf.data.Dataset.from_tensor_slices((train.inputs, self.one_hot(train.labels)))
        dataset = dataset.shuffle(len(train), seed=self.seed, reshuffle_each_iteration=True)
        dataset = dataset.batch(self.config.finetune_batch_size)
        augmentation = self.task.augmentation() if self.config.augment else None
        if augmentation is not None:
            dataset = dataset.map(lambda x, y: (augmentation(x, training=True), y))
        if self.config.mixup:
            dataset = dataset.map(self.mix)
        return dataset.repeat().prefetch(tf.data.AUTOTUNE)

    def mix(self, inputs, labels):
        """Mixup (Zhang et al. 2018): each example blended with another of the batch, labels alike."""
        alpha = self.config.mixup
        first, second = tf.random.gamma([], alpha), tf.random.gamma([], alpha)
        weight = first / (first + second)
        order = tf.random.shuffle(tf.range(tf.shape(labels)[0]))
        blend = lambda x: weight * tf.cast(x, tf.float32) + (1 - weight) * tf.cast(tf.gather(x, order), tf.float32)  # noqa: E731
        return blend(inputs), blend(labels)

    def baseline(self):
        """Logistic regression on the task's raw features: `(test_accuracy, C)`."""
        self.task.fit_baseline_features(self.splits.train.inputs)
        train, val, test = (
            (self.task.baseline_features(split.inputs), split.labels)
            for split in (self.splits.train, self.splits.val, self.splits.test)
        )
        model, C, _ = fit_logistic_regression(train, val, self.config.baseline_regularizations)
        return float(model.score(*test)), C

    def embeddings(self, encoder):
        """A classifier on a copy of `encoder`, and its embeddings of the train, validation and test inputs."""
        classifier = self.classifier(encoder)
        embedded = embed(classifier, *(split.inputs for split in self.features.values()))
        return classifier, {name: (x, split.labels) for (name, split), x in zip(self.features.items(), embedded)}

    def linear_probe(self, classifier, features):
        """Logistic regression on frozen pooled embeddings, as `classifier`'s head: `(val_accuracy, classifier)`.

        `C` is chosen on validation; the fitted weights become the head, so the
        probe exports like any other classifier.
        """
        model, C, val_accuracy = fit_logistic_regression(
            features["train"], features["val"], self.config.probe_regularizations
        )
        classifier.head.set_weights(softmax_weights(model))
        self.log(f"  linear probe: C {C:g} -> val {100 * val_accuracy:.2f}%")
        return val_accuracy, classifier

    def knn(self, encoder, features):
        """k nearest neighbours on frozen embeddings, as a classifier with a `KnnHead`: `(val_accuracy, classifier)`."""
        k, val_accuracy = fit_knn(features["train"], features["val"], self.num_classes, self.config.knn_neighbors,
                                  self.config.knn_temperature)
        head = KnnHead(*features["train"], num_classes=self.num_classes, k=k, temperature=self.config.knn_temperature,
                       name="head")
        classifier = self.task.new_classifier(encoder, head=head)
        classifier.compile(loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                           metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
        self.log(f"  kNN: k {k}, temperature {self.config.knn_temperature:g} -> val {100 * val_accuracy:.2f}%")
        return val_accuracy, classifier

    def best_on_validation(self, label, grid, encoder=None, head=None):
        """Fit one classifier per `(learning rate, layer decay)` point; keep the best on validation."""
        best = None
        val = self.features["val"]
        for learning_rate, layer_decay in grid:
            key = f"{label}, lr {learning_rate:g}, layer decay {layer_decay}"
            stored = self.store.load(key) if self.store is not None else None
            if stored is not None:
                val_accuracy, model = stored
                self.log(f"  {key} -> val {100 * val_accuracy:.2f}% (trained in an earlier run)")
            else:
                model = self.classifier(encoder, learning_rate, layer_decay, head)
                # All epochs as one: Keras's per-epoch work cost 70 ms an epoch here, a third of a 4-batch epoch.
                model.fit(self.training_data(), steps_per_epoch=self.finetune_steps, shuffle=False, verbose=0)
                val_accuracy = float(model.evaluate(val.inputs, self.one_hot(val.labels), batch_size=256, verbose=0)[1])
                self.log(f"  {key} -> val {100 * val_accuracy:.2f}%")
                if self.store is not None:
                    self.store.save(key, val_accuracy, model)
            if best is None or val_accuracy > best[0]:
                best = (val_accuracy, model)
        return best

    def test_accuracy(self, model):
        test = self.features["test"]
        return float(model.evaluate(test.inputs, self.one_hot(test.labels), batch_size=256, verbose=0)[1])

    def run(self, encoder, title="", output_dir=None, finetune=True):
        """Baseline, scratch, probe, kNN and fine-tuning; the curve; print, plot; return an `EvaluationResult`.

        `finetune=False` skips the two trained classifiers (scratch and
        fine-tuning): the frozen-feature protocols only.
        """
        self.log("Fitting the baseline and the classifiers; hyperparameters chosen on validation:")
        baseline_accuracy, baseline_C = self.baseline()
        models, validation = {}, {}
        if finetune:
            validation["scratch"], models["scratch"] = self.best_on_validation("scratch", self.config.scratch_grid)
        probe, features = self.embeddings(encoder)
        validation["linear probe"], models["linear probe"] = self.linear_probe(probe, features)
        validation["kNN"], models["kNN"] = self.knn(encoder, features)
        if finetune:
            validation["fine-tune"], models["fine-tune"] = self.best_on_validation(
                "fine-tune", self.config.finetune_grid, encoder, models["linear probe"]
            )
        protocol = max((p for p in PROTOCOLS if p in models), key=lambda p: (validation[p], -PROTOCOLS.index(p)))
        baseline_name = f"logistic regression ({self.task.baseline_name})"
        rows = {"scratch": "scratch", "fine-tune": "pre-trained, fine-tuned", "linear probe": "pre-trained, linear probe",
                "kNN": "pre-trained, kNN"}
        accuracies = {baseline_name: baseline_accuracy}
        accuracies.update({rows[name]: self.test_accuracy(model) for name, model in models.items()})
        chosen = accuracies[rows[protocol]]
        self.print_table({**accuracies, f"pre-trained ({protocol}, chosen on validation)": chosen}, title)
        self.log(("" if "scratch" not in accuracies else
                  f"  gain over scratch: {100 * (chosen - accuracies['scratch']):+.2f} points; ")
                 + f"over logistic regression: {100 * (chosen - baseline_accuracy):+.2f} points")
        curve = self.label_curve({"pre-trained": encoder, "random init": None})
        if output_dir is not None:
            plots.plot_accuracies(accuracies, Path(output_dir) / "accuracies.png", title=title)
            if curve:
                plots.plot_label_curve(curve, Path(output_dir) / "label_curve.png", title=title)
        results = {
            "baseline_accuracy": baseline_accuracy,
            "baseline_C": baseline_C,
            **({"scratch_accuracy": accuracies["scratch"], "finetune_accuracy": accuracies["pre-trained, fine-tuned"]}
               if finetune else {}),
            "probe_accuracy": accuracies["pre-trained, linear probe"],
            "knn_accuracy": accuracies["pre-trained, kNN"],
            "pretrained_accuracy": chosen,
            "pretrained_protocol": protocol,
            "validation_accuracy": validation,
            "test_size": len(self.splits.test),
            "label_curve": curve,
        }
        return EvaluationResult(models[protocol], protocol, results)

    def print_table(self, rows, title):
        width = max(map(len, rows))
        self.log(f"\nTest accuracy, {title} ({keras.backend.backend()})")
        for name, accuracy in rows.items():
            self.log(f"  {name:<{width}}  {100 * accuracy:6.2f}%")

    def label_curve(self, encoders):
        """Test accuracy of the probe and kNN (and the baseline) for several label counts, over several draws.

        `encoders` maps a name to an encoder (None: randomly initialised).
        Returns `{name: {protocol: {labels_per_class: {"mean", "std", "runs"}}}}`
        (the baseline under "baseline"), or `{}` without a label pool or counts.
        """
        pool = self.splits.pool
        counts = np.bincount(pool.labels, minlength=self.num_classes) if pool is not None else None
        sizes = [k for k in self.config.curve_labels_per_class if pool is not None and k <= counts.min()]
        if not sizes:
            return {}
        draws = {(k, seed): few_label_split(pool.labels, k, seed=seed)[0]
                 for k in sizes for seed in range(self.config.curve_seeds)}
        used = np.unique(np.concatenate(list(draws.values())))
        inputs = pool.load(used)
        position = {index: i for i, index in enumerate(used)}
        pick = lambda matrix, idx: matrix[[position[i] for i in idx]]  # noqa: E731
        self.log(f"Label-efficiency curve: {sizes} labels per class, {self.config.curve_seeds} draws each, "
                 f"probe and kNN on {', '.join(encoders)}")
        val_labels, test_labels = self.splits.val.labels, self.splits.test.labels

        def logistic_regression_curve(features, val, test, regularizations):
            """Logistic regression on each draw's rows of `features`, `C` chosen on `val`; its test accuracies."""
            problems = [((pick(features, idx), pool.labels[idx]), (val, val_labels)) for idx in draws.values()]
            runs = {}
            for (k, _), (model, _, _) in zip(draws, fit_logistic_regressions(problems, regularizations)):
                runs.setdefault(k, []).append(float(model.score(test, test_labels)))
            return _summarize(runs)

        raw, val_raw, test_raw = (self.task.baseline_features(x) for x in (inputs, self.splits.val.inputs,
                                                                           self.splits.test.inputs))
        curve = {"baseline": {f"logistic regression ({self.task.baseline_name})":
                              logistic_regression_curve(raw, val_raw, test_raw, self.config.baseline_regularizations)}}
        pool_features = self.task.classifier_inputs(inputs)
        for name, encoder in encoders.items():
            classifier = self.classifier(encoder)
            matrix, val, test = embed(classifier, pool_features, *(self.features[s].inputs for s in ("val", "test")))
            knn_runs = {}
            for (k, _), idx in draws.items():
                train = (pick(matrix, idx), pool.labels[idx])
                neighbours, _ = fit_knn(train, (val, val_labels), self.num_classes, self.config.knn_neighbors,
                                        self.config.knn_temperature)
                predicted = knn_probabilities(*train, test, self.num_classes, neighbours, self.config.knn_temperature)
                knn_runs.setdefault(k, []).append(float((predicted.argmax(1) == test_labels).mean()))
            probe = logistic_regression_curve(matrix, val, test, self.config.probe_regularizations)
            curve[name] = {"linear probe": probe, "kNN": _summarize(knn_runs)}
        self.log(format_curve(curve))
        return curve


def _summarize(runs):
    return {str(k): {"mean": float(np.mean(v)), "std": float(np.std(v)), "runs": v} for k, v in runs.items()}


def format_curve(curve):
    """The label-efficiency curve as a text table: mean +- std test accuracy (%) per labels per class.

    Example:
    >>> print(format_curve(results["label_curve"]))
    """
    sizes = sorted({int(k) for protocols in curve.values() for points in protocols.values() for k in points})
    rows = [(f"{name}, {protocol}", points) for name, protocols in curve.items() for protocol, points in protocols.items()]
    width = max(len(label) for label, _ in rows)
    lines = [f"  {'labels per class':<{width}}" + "".join(f"{k:>14}" for k in sizes)]
    for label, points in rows:
        cells = "".join(
            f"{100 * points[str(k)]['mean']:>8.2f} ± {100 * points[str(k)]['std']:<4.1f}" if str(k) in points else " " * 14
            for k in sizes
        )
        lines.append(f"  {label:<{width}}{cells}")
    return "\n".join(lines)


def evaluate_few_labels(task, encoder, splits, config=None, log=print, seed=0, title="", output_dir=None, finetune=True):
    """Compare a pre-trained `encoder` with a baseline and with scratch training on few labels.

    Returns an `EvaluationResult`: the classifier chosen on validation, its
    protocol, and the result keys (test accuracies, validation accuracies,
    the baseline's `C`, the label-efficiency curve). With `output_dir`, also
    writes `accuracies.png` and `label_curve.png` there.

    Example:
    >>> result = evaluate_few_labels(ImageTask(new_encoder, (28, 28, 1), class_names), mae.encoder, splits)
    >>> result.chosen.save("classifier.keras")
    """
    evaluation = FewLabelEvaluation(task, splits, config or EvaluationConfig(), log=log, seed=seed)
    return evaluation.run(encoder, title=title, output_dir=output_dir, finetune=finetune)

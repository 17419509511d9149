"""What every recipe shares: options, discovery by name or file, results and the table.

A recipe is a plain Python class a user can drive by hand. It hands out the
data, the compiled pre-training model and the fine-tuning model, and `run()`
chains them into pre-train -> fine-tune -> compare -> export.

Example:
>>> recipe = load_recipe("mae_fashion_mnist", labels_per_class=10)
>>> data = recipe.load_data()
>>> mae = recipe.pretrain_model()
>>> mae.fit(data.unlabeled, batch_size=256, epochs=1)
>>> classifier = recipe.finetune_model(mae.encoder)
>>> classifier.fit(*data.train, epochs=100)
"""

import ast
import importlib
import importlib.util
import json
import pkgutil
import time
from pathlib import Path


class Recipe:
    """Base class of recipes. Subclasses set `name` and implement `run()`.

    Args:
        labels_per_class: labelled examples per class for fine-tuning.
        pretrain_epochs: pre-training epochs (None: the recipe's default).
        output_dir: where results.json and plots go (default `runs/<name>`).
        export_root: where SavedModels go, in TF Serving layout.
        quick: a smoke run of about a minute on a slice of the data.
        data_dir: a directory holding the data set, instead of searching for it.
        seed: seed of the label draw and of every model.
        verbose: 1 shows progress bars, 0 is silent.
        distribution: a `keras_pretrain.distribute.DistributionPlan` for
            pre-training on several devices or hosts (default: one device).
            Only its chief process logs; recipes build and `fit` their
            pre-training model in `distribution.scope()`, feed it
            `distribution.fit_arguments(...)`, and leave the rest to the chief.
    """

    name = None

    def __init__(
        self,
        labels_per_class=10,
        pretrain_epochs=None,
        output_dir=None,
        export_root="saved_models",
        quick=False,
        data_dir=None,
        seed=0,
        verbose=1,
        distribution=None,
    ):
        if labels_per_class is None or labels_per_class < 1:
            raise ValueError(f"labels_per_class must be at least 1; got {labels_per_class}.")
        if pretrain_epochs is not None and pretrain_epochs < 1:
            raise ValueError(f"pretrain_epochs must be at least 1; got {pretrain_epochs}.")
        self.labels_per_class = labels_per_class
        self.pretrain_epochs = pretrain_epochs
        self.output_dir = Path(output_dir or Path("runs") / self.name)
        self.export_root = Path(export_root)
        self.quick = quick
        self.data_dir = data_dir
        self.seed = seed
        if distribution is None:
            from keras_pretrain.distribute.plan import DistributionPlan

            distribution = DistributionPlan()
        self.distribution = distribution
        self.verbose = verbose if distribution.is_chief else 0

    def run(self):
        """Pre-train, fine-tune, compare, export; return the results dict."""
        raise NotImplementedError

    def log(self, message):
        if self.verbose:
            print(message, flush=True)

    def write_results(self, results):
        """Write `results.json` in the output directory, after the common keys."""
        import keras  # not at the top: listing recipes must not import keras

        results = {"recipe": self.name, "backend": keras.backend.backend(), **results}
        if self.distribution.distributed:
            results["distribution"] = self.distribution.describe()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / "results.json"
        path.write_text(json.dumps(results, indent=2) + "\n")
        return path

    def print_table(self, accuracies, title):
        """Print `{model: accuracy}` as an aligned table."""
        width = max(map(len, accuracies))
        self.log(f"\n{title}")
        for model, accuracy in accuracies.items():
            self.log(f"  {model:<{width}}  {100 * accuracy:6.2f}%")

    def fit_best_on_validation(self, label, grid, new_model, train, val):
        """Fit `new_model(learning_rate, layer_decay)` for each grid point; keep the best on validation.

        `train` and `val` are `(inputs, labels)`. Returns `(val_accuracy, model)`.
        """
        best = None
        for learning_rate, layer_decay in grid:
            model = new_model(learning_rate, layer_decay)
            model.fit(*train, batch_size=self.finetune_batch_size, epochs=self.finetune_epochs, verbose=0)
            val_accuracy = model.evaluate(*val, batch_size=256, verbose=0)[1]
            self.log(f"  {label}: lr {learning_rate:g}, layer decay {layer_decay} -> val {100 * val_accuracy:.2f}%")
            if best is None or val_accuracy > best[0]:
                best = (val_accuracy, model)
        return best

    def compile_classifier(self, classifier, learning_rate, layer_decay, weight_decay, num_labels, head=None):
        """Compile a built classifier for `self.finetune_epochs` over `num_labels` examples; return it.

        `head` (a classifier, typically the linear probe) gives the starting
        head: linear probing then fine-tuning (LP-FT) keeps a random head from
        wrecking pre-trained features on few labels.
        """
        import keras

        from keras_pretrain.optimizers import make_adamw

        if head is not None:
            classifier.head.set_weights(head.head.get_weights())
        steps = self.finetune_epochs * -(-num_labels // self.finetune_batch_size)
        classifier.compile(
            optimizer=make_adamw(classifier, learning_rate, steps, weight_decay=weight_decay, layer_decay=layer_decay),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        return classifier

    def export_classifier(self, classifier, samples, protocol):
        """Export `classifier` as a verified SavedModel under `export_root`; return the export keys of `results.json`.

        `samples` are raw inputs (images or strings) the fresh-process check
        runs through every signature.
        """
        from keras_pretrain.export import export_saved_model

        start = time.time()
        path = export_saved_model(classifier, self.name, root=self.export_root, samples=samples)
        seconds = time.time() - start
        megabytes = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20
        max_abs_diff = max(classifier.export_report["max_abs_diff"].values())
        self.log(f"Exported the {protocol} classifier to {path} in {seconds:.0f} s ({megabytes:.1f} MB); "
                 f"fresh-process TensorFlow reload: same labels, max abs diff {max_abs_diff:.2g}")
        return {"export_path": str(path), "export_seconds": seconds, "export_megabytes": megabytes,
                "export_max_abs_diff": max_abs_diff}

    def compare(self, baseline, scratch, finetuned, probe, validation, evaluate, title, plot_title):
        """Evaluate every model once on the test split, print the table, plot it; return the result keys.

        `baseline` is `(name, test_accuracy)`; `scratch`, `finetuned` and
        `probe` are Keras classifiers; `validation` maps "scratch",
        "fine-tune" and "linear probe" to validation accuracies, which alone
        decide the recipe's answer: whichever use of the pre-trained encoder
        wins on validation. `evaluate(model)` gives a test accuracy.
        Returns `(chosen_model, results)`, `results` holding the accuracy
        keys of `results.json`.
        """
        import keras

        from keras_pretrain import plots

        protocol = "fine-tune" if validation["fine-tune"] >= validation["linear probe"] else "linear probe"
        baseline_name, baseline_accuracy = baseline
        accuracies = {
            f"logistic regression ({baseline_name})": baseline_accuracy,
            "scratch": evaluate(scratch),
            "pre-trained, fine-tuned": evaluate(finetuned),
            "pre-trained, linear probe": evaluate(probe),
        }
        chosen = accuracies["pre-trained, fine-tuned" if protocol == "fine-tune" else "pre-trained, linear probe"]
        self.print_table(
            {**accuracies, f"pre-trained ({protocol}, chosen on validation)": chosen},
            f"Test accuracy, {title} ({keras.backend.backend()})",
        )
        self.log(f"  gain over scratch: {100 * (chosen - accuracies['scratch']):+.2f} points; "
                 f"over logistic regression: {100 * (chosen - baseline_accuracy):+.2f} points")
        plots.plot_accuracies(accuracies, self.output_dir / "accuracies.png", title=plot_title)
        results = {
            "baseline_accuracy": baseline_accuracy,
            "scratch_accuracy": accuracies["scratch"],
            "finetune_accuracy": accuracies["pre-trained, fine-tuned"],
            "probe_accuracy": accuracies["pre-trained, linear probe"],
            "pretrained_accuracy": chosen,
            "pretrained_protocol": protocol,
            "validation_accuracy": validation,
        }
        return (finetuned if protocol == "fine-tune" else probe), results


def recipe_descriptions():
    """`{name: first docstring line}` of the built-in recipes, without importing them."""
    import keras_pretrain.recipes as package

    descriptions = {}
    for module in pkgutil.iter_modules(package.__path__):
        if module.name.startswith("_"):
            continue
        source = Path(package.__path__[0], f"{module.name}.py").read_text()
        doc = ast.get_docstring(ast.parse(source)) or ""
        descriptions[module.name] = doc.strip().splitlines()[0] if doc else ""
    return descriptions


def load_recipe(name_or_path, **options):
    """A recipe instance from a built-in name or from a path to a user's `.py` file.

    The module must define exactly one subclass of `Recipe`. `options` go to
    its constructor.
    """
    if str(name_or_path).endswith(".py"):
        path = Path(name_or_path)
        if not path.is_file():
            raise FileNotFoundError(f"Recipe file {path} does not exist.")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        known = recipe_descriptions()
        if name_or_path not in known:
            raise ValueError(
                f"Unknown recipe {name_or_path!r}. Available: {', '.join(sorted(known))}; "
                "or pass the path of your own recipe file (my_recipe.py)."
            )
        module = importlib.import_module(f"keras_pretrain.recipes.{name_or_path}")
    classes = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, Recipe) and obj.__module__ == module.__name__
    ]
    if len(classes) != 1:
        raise ValueError(
            f"{name_or_path} must define exactly one subclass of keras_pretrain.recipe.Recipe; "
            f"found {len(classes)}."
        )
    return classes[0](**options)


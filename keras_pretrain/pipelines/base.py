"""What every pipeline shares: pre-training and export options, the run's order, results and export."""

import dataclasses
import json
import time
from pathlib import Path

import keras

from keras_pretrain.config import check, override, to_dict
from keras_pretrain.evaluation import FewLabelEvaluation


@dataclasses.dataclass
class PretrainConfig:
    """Pre-training budget and optimiser: AdamW, linear warmup then cosine decay over every step."""

    epochs: int = 10
    batch_size: int = 256
    learning_rate: float = 1.5e-3
    weight_decay: float = 0.05
    beta_2: float = 0.95

    def __post_init__(self):
        check(self.epochs >= 1, f"pretrain.epochs must be at least 1; got {self.epochs}.")
        check(self.batch_size >= 1, f"pretrain.batch_size must be at least 1; got {self.batch_size}.")
        check(self.learning_rate > 0, f"pretrain.learning_rate must be positive; got {self.learning_rate}.")


@dataclasses.dataclass
class ExportConfig:
    """Where the chosen classifier goes: `root/NAME/VERSION/`, TF Serving's layout (`enabled=False` skips it)."""

    root: str = "saved_models"
    enabled: bool = True


@dataclasses.dataclass
class PipelineData:
    """What `Pipeline.load_data` hands out: the few-label splits, the pre-training data, a description."""

    splits: object  # keras_pretrain.evaluation.FewLabelSplits
    pretraining: object  # the modality's own: image sources and indices, or a text corpus
    description: dict  # for results.json: sources, sizes, which split was carved out


def apply_quick(config):
    """The smoke-run version of a pipeline config: one pre-training epoch, one grid point each, then `config.quick`."""
    evaluation = config.evaluation
    generic = {
        "smoke_run": True,
        "pretrain.epochs": 1,
        "evaluation.finetune_grid": evaluation.finetune_grid[:1],
        "evaluation.scratch_grid": evaluation.scratch_grid[:1],
    }
    return override(override(config, generic), config.quick)


class Pipeline:
    """Data -> pre-training -> few-label evaluation -> export, driven by one config object.

    Subclasses fill in the modality: `load_data()` (the few-label splits and
    the pre-training data), `pretrain(data)` (fit the objective, save what it
    made, return the encoder and result keys), `task(data)` (a
    `FewLabelTask`) and `export_samples(data)`. Only the chief process
    evaluates, writes and exports; every process pre-trains.

    Args:
        config: the pipeline's config (see `ImagePipelineConfig`, `TextPipelineConfig`).
        distribution: a `keras_pretrain.distribute.DistributionPlan` (default: one device).
        verbose: 1 prints progress; 0 is silent.
    """

    def __init__(self, config, distribution=None, verbose=1):
        if distribution is None:
            from keras_pretrain.distribute import DistributionPlan

            distribution = DistributionPlan()
        self.config = config
        self.distribution = distribution
        self.verbose = verbose if distribution.is_chief else 0
        self.output_dir = Path(config.output_dir or Path("runs") / config.name)

    def log(self, message):
        if self.verbose:
            print(message, flush=True)

    def run(self):
        """Run every step; return the `results.json` dict (None on processes other than the chief)."""
        start = time.time()
        data = self.load_data()
        if self.output_dir.exists() and not self.output_dir.is_dir():
            raise ValueError(f"The output directory {self.output_dir} is a file: pass another --output.")
        if self.distribution.is_chief:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        encoder, pretraining = self.pretrain(data)
        if not self.distribution.is_chief:
            return None
        evaluation_start = time.time()
        evaluation = FewLabelEvaluation(self.task(data), data.splits, self.config.evaluation, self.log, self.config.seed)
        result = evaluation.run(encoder, title=self.title(data), output_dir=self.output_dir)
        results = {
            "labels_per_class": self.config.evaluation.labels_per_class,
            **result.results,
            **pretraining,
            "finetune_seconds": time.time() - evaluation_start,
            "data": data.description,
        }
        if self.config.export.enabled:
            results.update(self.export(result.chosen, self.export_samples(data), result.protocol))
        results["quick"] = self.config.smoke_run
        results["total_seconds"] = time.time() - start
        results["config"] = to_dict(self.config)
        path = self.write_results(results)
        self.log(f"Wrote {path} and plots in {self.output_dir} ({results['total_seconds'] / 60:.1f} minutes in all)")
        return results

    def title(self, data):
        return f"{self.config.name}, {self.config.evaluation.labels_per_class} labels per class"

    def export(self, classifier, samples, protocol):
        """Export `classifier` as a verified SavedModel; return the export keys of `results.json`."""
        from keras_pretrain.export import export_saved_model

        start = time.time()
        path = export_saved_model(classifier, self.config.name, root=self.config.export.root, samples=samples)
        seconds = time.time() - start
        megabytes = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20
        max_abs_diff = max(classifier.export_report["max_abs_diff"].values())
        self.log(f"Exported the {protocol} classifier to {path} in {seconds:.0f} s ({megabytes:.1f} MB); "
                 f"fresh-process TensorFlow reload: same labels, max abs diff {max_abs_diff:.2g}")
        return {"export_path": str(path), "export_seconds": seconds, "export_megabytes": megabytes,
                "export_max_abs_diff": max_abs_diff}

    def write_results(self, results):
        """Write `results.json` in the output directory (atomically), after the common keys; return its path."""
        results = {"recipe": self.config.name, "backend": keras.backend.backend(), **results}
        if self.distribution.distributed:
            results["distribution"] = self.distribution.describe()
        path = self.output_dir / "results.json"
        partial = path.with_suffix(".json.tmp")
        partial.write_text(json.dumps(results, indent=2) + "\n")
        partial.replace(path)
        return path

    def fit_pretraining(self, model, dataset, steps_per_epoch, verbose):
        """`model.fit` on `dataset` (this process's batches, repeated) under the distribution plan."""
        start = time.time()
        history = model.fit(
            **self.distribution.distribute(dataset.repeat()),
            steps_per_epoch=steps_per_epoch,
            epochs=self.config.pretrain.epochs,
            shuffle=False,  # the datasets shuffle themselves
            verbose=verbose,
        )
        return history.history, time.time() - start

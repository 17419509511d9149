"""What every pipeline shares: pre-training and export options, the run's order, results and export."""

import contextlib
import dataclasses
import json
import os
import time
from pathlib import Path

import keras
import numpy as np

from keras_pretrain.checkpoints import Checkpoint, ClassifierStore, Diverged, Interrupted, RunRecord
from keras_pretrain.config import check, override, parse_assignment, to_dict
from keras_pretrain.evaluation import FewLabelEvaluation


# Updates when no budget is given: the Fashion-MNIST recipe's order of magnitude, whatever the data size.
DEFAULT_STEPS = 3000


@dataclasses.dataclass
class PretrainConfig:
    """Pre-training budget and optimiser: AdamW, linear warmup then cosine decay over every step.

    The budget is the first of these that is set: `budget_minutes` (the
    steps that fit in that time, measured on a few steps first), `steps`
    (optimizer updates, whatever the data size: a small data set gets as many
    updates as a large one), `epochs` (passes over the data); with none of
    them, `DEFAULT_STEPS`.

    Example:
    >>> ImagePipelineConfig(pretrain=PretrainConfig(steps=2000, batch_size=128, dtype_policy="mixed_bfloat16"))
    """

    epochs: int | None = None
    steps: int | None = None
    budget_minutes: float | None = None
    batch_size: int = 256
    checkpoint_every: int = 500  # steps between checkpoints (one is also written when pre-training ends)
    learning_rate: float = 1.5e-3
    weight_decay: float = 0.05
    beta_2: float = 0.95
    # Keras dtype policy of pre-training: "float32", "mixed_bfloat16", or "mixed_float16" (loss scaling added).
    dtype_policy: str = "float32"
    gradient_accumulation_steps: int = 1  # update once every k batches, with their average gradient
    clipnorm: float | None = None  # clip the global norm of the gradients
    # The machine's peak FLOP/s for MFU (default: a matrix product in the compute dtype, timed).
    peak_flops: float | None = None

    def __post_init__(self):
        for name in ("epochs", "steps"):
            value = getattr(self, name)
            check(value is None or value >= 1, f"pretrain.{name} must be at least 1; got {value}.")
        check(self.budget_minutes is None or self.budget_minutes > 0,
              f"pretrain.budget_minutes must be positive; got {self.budget_minutes}.")
        check(self.batch_size >= 1, f"pretrain.batch_size must be at least 1; got {self.batch_size}.")
        check(self.learning_rate > 0, f"pretrain.learning_rate must be positive; got {self.learning_rate}.")
        policies = ("float32", "mixed_bfloat16", "mixed_float16", "bfloat16", "float16")
        check(self.dtype_policy in policies, f"pretrain.dtype_policy must be one of {', '.join(policies)}; "
              f"got {self.dtype_policy!r}.")
        check(self.gradient_accumulation_steps >= 1,
              f"pretrain.gradient_accumulation_steps must be at least 1; got {self.gradient_accumulation_steps}.")
        check(self.clipnorm is None or self.clipnorm > 0, f"pretrain.clipnorm must be positive; got {self.clipnorm}.")

    def optimizer(self, model, total_steps):
        """AdamW for `model` with this config's schedule, decay, clipping and accumulation (see `make_adamw`)."""
        from keras_pretrain.optimizers import make_adamw

        return make_adamw(
            model, self.learning_rate, total_steps, weight_decay=self.weight_decay, beta_2=self.beta_2,
            global_clipnorm=self.clipnorm,
            gradient_accumulation_steps=self.gradient_accumulation_steps if self.gradient_accumulation_steps > 1 else None,
        )


@dataclasses.dataclass
class ExportConfig:
    """Where the chosen classifier goes: `root/NAME/VERSION/`, TF Serving's layout (`enabled=False` skips it).

    Example:
    >>> ImagePipelineConfig(name="pets", export=ExportConfig(root="/srv/models"))  # to /srv/models/pets/1/
    """

    root: str = "saved_models"
    enabled: bool = True


@dataclasses.dataclass
class PipelineData:
    """What `Pipeline.load_data` hands out: the few-label splits, the pre-training data, a description."""

    splits: object  # keras_pretrain.evaluation.FewLabelSplits
    pretraining: object  # the modality's own: image sources and indices, or a text corpus
    description: dict  # for results.json: sources, sizes, which split was carved out


class StepEnds(keras.callbacks.Callback):
    """Records when each training step ends (`time.perf_counter()`)."""

    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_end(self, batch, logs=None):
        if logs and "loss" in logs:
            float(np.asarray(logs["loss"]))  # wait for the step (JAX dispatches asynchronously)
        self.times.append(time.perf_counter())


def steady_steps_per_second(step_seconds):
    """Steps per second from step times, leaving out the steps that compiled (over 3x the median).

    Example:
    >>> steady_steps_per_second([0.1, 0.1, 2.5, 0.1])  # the third step compiled a new batch shape
    10.0
    """
    step_seconds = np.asarray(step_seconds, dtype=float)
    steady = step_seconds[step_seconds <= 3 * np.median(step_seconds)]
    return float(1 / steady.mean())


def counted(number, noun):
    """`number noun`, the noun in the plural unless the number is 1.

    Example:
    >>> f"{counted(1, 'epoch')} of {counted(14, 'step')}"
    '1 epoch of 14 steps'
    """
    return f"{number} {noun}{'' if number == 1 else 's'}"


BUDGET_KEYS = ("pretrain.budget_minutes", "pretrain.steps", "pretrain.epochs")


def apply_overrides(config, assignments):
    """`override`, except that setting one pre-training budget (minutes, steps or epochs) clears the other two.

    The budget a user names is the one that counts, whatever the recipe set.

    Example:
    >>> apply_overrides(load_recipe("mae_images"), ["pretrain.steps=300"]).pretrain.budget_minutes is None
    True
    """
    keys = [key for key, _ in (assignments.items() if isinstance(assignments, dict) else map(parse_assignment, assignments))]
    config = override(config, assignments)
    named = [key for key in BUDGET_KEYS if key in keys]
    return override(config, {key: None for key in BUDGET_KEYS if key not in named}) if named else config


def check_writable(directory, option="--output", what="output"):
    """Refuse, before any work, a directory (the `what` directory, set by `option`) that is a file or could not be
    created or written to.

    Example:
    >>> check_writable("saved_models/mae_images", "--export-root", "export")
    """
    existing = Path(directory).absolute()
    while not existing.exists():
        existing = existing.parent
    if existing == Path(directory).absolute() and not existing.is_dir():
        raise ValueError(f"The {what} directory {directory} is a file: pass another {option}.")
    if not existing.is_dir():
        raise ValueError(f"The {what} directory {directory} cannot be made: {existing} is a file. "
                         f"Pass another {option}.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"The {what} directory {directory} is not writable ({existing} is not): pass another {option} "
                         "or fix its permissions.")


def apply_quick(config):
    """The smoke-run version of a pipeline config: one pre-training epoch, one grid point each, then `config.quick`.

    Example:
    >>> config = apply_quick(load_recipe("mae_images"))
    >>> config.pretrain.epochs, config.smoke_run
    (1, True)
    """
    evaluation = config.evaluation
    generic = {
        "smoke_run": True,
        "pretrain.epochs": 1,
        "pretrain.steps": None,
        "pretrain.budget_minutes": None,
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
        callbacks: more Keras callbacks for pre-training's `fit`.
        restart: drop what an earlier run left in the output directory (once the data has loaded) and start over.

    Example:
    >>> pipeline = pipeline_for(load_recipe("mae_fashion_mnist"), verbose=0)  # an ImagePipeline
    >>> results = pipeline.run()  # a rerun with the same output_dir resumes; restart=True starts over
    """

    def __init__(self, config, distribution=None, verbose=1, callbacks=(), restart=False):
        if distribution is None:
            from keras_pretrain.distribute import DistributionPlan

            distribution = DistributionPlan()
        self.config = config
        self.distribution = distribution
        self.verbose = verbose if distribution.is_chief else 0
        self.callbacks = list(callbacks)
        self.output_dir = Path(config.output_dir or Path("runs") / config.name)
        check_writable(self.output_dir)
        if config.export.enabled:
            check_writable(Path(config.export.root) / config.name, "--export-root", "export")
        if config.pretrain.dtype_policy in ("mixed_float16", "float16") and keras.backend.backend() == "jax":
            import jax

            check(jax.default_backend() != "cpu", f"pretrain.dtype_policy={config.pretrain.dtype_policy} does not run "
                  "on jax's CPU (XLA:CPU has no float16 matrix product): use mixed_bfloat16, or another backend.")
        # What makes a rerun the same run: everything but where results go and how they are evaluated.
        trained = {k: v for k, v in to_dict(config).items() if k not in ("output_dir", "export", "evaluation", "quick")}
        self.checkpoint = Checkpoint(self.output_dir / "checkpoint", {"config": trained, "backend": keras.backend.backend()})
        self.record = RunRecord(self.output_dir / "phases.json", self.checkpoint.fingerprint)
        self.restart = restart

    def log(self, message):
        if self.verbose:
            print(message, flush=True)

    def run(self):
        """Run every step; return the `results.json` dict (None on processes other than the chief).

        A rerun with the same `output_dir` resumes: finished pre-training is
        not repeated, an interrupted one continues from its checkpoint, and
        finished fine-tuning runs are loaded (`restart=True` starts over).
        """
        start = time.time()
        resumed = self.resume_point()
        if resumed:
            self.log(f"Resuming from {self.output_dir}: {resumed}")
        data = self.load_data()
        if self.restart:  # only now: a mistyped --data must not cost the earlier run's progress
            self.checkpoint.delete()
            self.record.delete()
            self.restart = False
        finished = self.record.get("pretraining")
        if finished is not None:
            encoder, pretraining = self.load_pretrained(data, finished), finished
        else:
            encoder, pretraining = self.pretrain(data)
            if self.distribution.is_chief:
                self.record.put("pretraining", pretraining)
                self.checkpoint.delete()  # the encoder is saved: the mid-training state is no longer needed
        if not self.distribution.is_chief:
            return None
        evaluation_start = time.time()
        store = ClassifierStore(self.record, self.output_dir / "classifiers", to_dict(self.config.evaluation))
        evaluation = FewLabelEvaluation(self.task(data), data.splits, self.config.evaluation, self.log, self.config.seed,
                                        store)
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

    def schedule(self, steps_per_pass, new_model, new_dataset):
        """`(epochs, steps_per_epoch, why)`: how `config.pretrain`'s budget becomes `fit`'s arguments.

        `steps_per_pass` is one pass over the data; an epoch is one pass, or
        the whole budget when that is shorter. With `budget_minutes`, a model
        from `new_model(total_steps)` is timed on a few batches of a data set
        from `new_dataset()` first (both thrown away).
        """
        pretrain = self.config.pretrain
        if pretrain.budget_minutes:
            rate = self.steps_per_second(new_model, new_dataset())
            total = max(1, int(pretrain.budget_minutes * 60 * rate))
            why = f"{pretrain.budget_minutes:g} minutes at {rate:.1f} steps/s measured (pretrain.budget_minutes)"
        elif pretrain.steps:
            total, why = pretrain.steps, "pretrain.steps"
        elif pretrain.epochs:
            return pretrain.epochs, steps_per_pass, "pretrain.epochs"
        else:
            total, why = DEFAULT_STEPS, f"the default budget of {DEFAULT_STEPS} steps: set pretrain.steps or epochs"
        steps_per_epoch = min(steps_per_pass, total)
        return max(1, round(total / steps_per_epoch)), steps_per_epoch, why

    def steps_per_second(self, new_model, dataset, warmup=3, timed=40):
        """Training steps per second of a model on `dataset`, after `warmup` steps (compilation).

        Steps that compile (JAX and TensorFlow compile once per batch shape, and
        length buckets bring new shapes at random) would make the budget far too
        short: the rate comes from `steady_steps_per_second` on each step's time.
        """
        ends = StepEnds()
        with self.distribution.scope():
            model = new_model(1000)
            data = self.distribution.distribute(dataset.repeat())
            model.fit(**data, steps_per_epoch=warmup, epochs=1, shuffle=False, verbose=0)
            model.fit(**data, steps_per_epoch=timed, epochs=1, shuffle=False, verbose=0, callbacks=[ends])
        return self.distribution.agree_min(steady_steps_per_second(np.diff(ends.times)) * 1000) / 1000

    def resume_point(self):
        """What an earlier run with this output left (a line for the log), or None; refuses another configuration's."""
        if self.restart:
            return None
        if self.record.get("pretraining") is not None:
            trained = len(self.record.get("fine-tuning") or {})
            return ("pre-training finished earlier; its encoder is reused"
                    + (f", and {trained} fine-tuned classifier{'s' if trained > 1 else ''}" if trained else ""))
        if self.checkpoint.exists():
            return f"pre-training checkpoint at step {self.checkpoint.step()} in {self.checkpoint.directory}"
        return None

    def new_dataset(self, build):
        """`build()` (a data set of this process's batches) with TensorFlow's seeds reset first.

        tf.data shuffles with seed generators that advance with every pass
        over a data set object; a fresh object built from the same seeds
        replays the same orders, which is how a resumed run finds its place.
        """
        keras.utils.set_random_seed(self.config.seed)
        return build()

    def fit_pretraining(self, model, dataset, new_dataset, epochs, steps_per_epoch, verbose, throughput=None):
        """`model.fit` on `dataset` (this process's batches, repeated) under the distribution plan, checkpointed.

        `new_dataset()` builds a fresh copy of `dataset` as it was when handed
        over (same seeds, same passes made). Training resumes from the
        checkpoint, mid-epoch if it was taken there: a fresh copy skips the
        batches already seen, so a resumed run sees the same batches in the
        same order as an uninterrupted one. `throughput` (a `Throughput`
        callback) puts samples/s and MFU in the logs, which also go to
        TensorBoard in `<output>/logs`. Returns `(history, seconds, steps)`,
        all of this call's own (after a resume, the steps left); raises
        `Interrupted` after a SIGTERM (with a checkpoint saved) and `Diverged`
        on a non-finite loss (the last good checkpoint kept).
        """
        done = self.checkpoint.restore(model)
        saving = self.checkpoint.callback(self.config.pretrain.checkpoint_every, step=done)
        # TerminateOnNaN goes before the checkpoint: a step with a NaN loss stops fit before it can be saved.
        callbacks = [keras.callbacks.TerminateOnNaN(raise_error=True), *([throughput] if throughput else []),
                     *self.callbacks]
        if self.distribution.is_chief:
            self.output_dir.mkdir(parents=True, exist_ok=True)  # only now: bad input above leaves nothing behind
            callbacks += [keras.callbacks.TensorBoard(self.output_dir / "logs"), saving]
        epoch, batch = divmod(done, steps_per_epoch)
        # An interrupted epoch is finished first, then whole epochs: each fit reads from where the last stopped.
        runs = ([(epoch, steps_per_epoch - batch)] if batch else []) + [(e, steps_per_epoch)
                                                                        for e in range(epoch + bool(batch), epochs)]
        history, start, position = {}, time.time(), done
        for first, count in _contiguous(runs):
            source = dataset if position == done else new_dataset()
            arguments = self.distribution.distribute(source.repeat().skip(position))
            try:
                fitted = model.fit(
                    **{**arguments, "callbacks": [*arguments.get("callbacks", []), *callbacks]},
                    initial_epoch=first[0], epochs=first[0] + count, steps_per_epoch=first[1],
                    shuffle=False,  # the datasets shuffle themselves
                    verbose=verbose,
                )
            except RuntimeError as error:
                if "NaN or Inf" not in str(error):
                    raise
                raise Diverged(
                    f"The pre-training loss became NaN or infinite at step {saving.step + 1}; the last good checkpoint "
                    f"(step {self.checkpoint.step()}) is kept in {self.checkpoint.directory}: lower "
                    "pretrain.learning_rate or set pretrain.clipnorm, then rerun (or --restart)."
                ) from None
            for key, values in fitted.history.items():
                history.setdefault(key, []).extend(values)
            position += count * first[1]
            if saving.interrupted:
                raise Interrupted(
                    f"Stopped by SIGTERM at step {saving.step} of {epochs * steps_per_epoch}; checkpoint saved in "
                    f"{self.checkpoint.directory}. Rerun the same command to resume."
                )
        return history, time.time() - start, position - done


@contextlib.contextmanager
def dtype_policy(name):
    """Build models under Keras's dtype policy `name` (layers keep the policy they were made with), then restore it.

    Example:
    >>> with dtype_policy("mixed_bfloat16"):
    ...     model = build_model()   # bfloat16 compute, float32 variables
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _contiguous(runs):
    """`[(epoch, steps), ...]` -> `[((first_epoch, steps), count), ...]`: consecutive epochs of one length as one fit."""
    merged = []
    for epoch, steps in runs:
        if merged and merged[-1][0][1] == steps and merged[-1][0][0] + merged[-1][1] == epoch:
            merged[-1] = (merged[-1][0], merged[-1][1] + 1)
        else:
            merged.append(((epoch, steps), 1))
    return merged

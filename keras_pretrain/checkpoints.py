"""Checkpoints of a training run: written atomically, resumed mid-epoch exactly, tied to the run's configuration.

A checkpoint is a directory holding Keras's own weights file of the model
(`model.save_weights`: every variable and the optimizer's state) and
`state.json` (the step reached, what the run was, and the seed generators'
states, which the weights file leaves out). It is written into a temporary directory and swapped in with two
renames, so a crash, a kill or a full disk leaves the previous checkpoint
whole. Keras's `BackupAndRestore` does not fit: it restarts an interrupted
epoch from its first batch and writes its files in place.

Example:
>>> checkpoint = Checkpoint("runs/mine/checkpoint", fingerprint={"config": config_dict, "backend": "jax"})
>>> done = checkpoint.restore(model)               # 0, or the step the last run reached
>>> model.fit(dataset.repeat().skip(done), callbacks=[checkpoint.callback(every=500, step=done)], ...)
"""

import json
import os
import shutil
import signal
from pathlib import Path

import keras
import numpy as np


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupt, or from another configuration. The message says what to do."""


class Interrupted(Exception):
    """Training stopped on a signal after saving a checkpoint; the message says how to resume."""


class Diverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept and the message says what to try."""


def load_keras_file(path, fix, compile=False):
    """`keras.saving.load_model(path)`, or a one-line `CheckpointError` that names `path` and says `fix`.

    Keras reports a damaged `.keras` file as "File not found"; this says what is wrong with it.

    Example:
    >>> encoder = load_keras_file("runs/mine/encoder.keras", "pass --restart to start over.")
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist: {fix}")
    import keras_pretrain.models  # noqa: F401  (registers the classes a .keras file names)

    try:
        return keras.saving.load_model(path, compile=compile)
    except Exception as error:  # a damaged zip, a missing class, a foreign file: Keras raises many kinds
        reason = " ".join(str(error).split())[:120]
        raise CheckpointError(
            f"{path} cannot be read as a Keras model ({type(error).__name__}: {reason}): {fix}"
        ) from None


class Checkpoint:
    """One run's checkpoint directory. See the module docstring.

    Args:
        directory: where the checkpoint lives (`<output>/checkpoint`).
        fingerprint: what makes two runs the same run (the training
            config, the backend); a checkpoint with another one is refused.
    """

    def __init__(self, directory, fingerprint):
        self.directory = Path(directory)
        self.fingerprint = json.loads(json.dumps(fingerprint))
        self.previous = self.directory.with_name(self.directory.name + ".previous")

    def _latest(self):
        """The directory of the newest whole checkpoint (a crash between the two renames leaves `.previous`)."""
        for directory in (self.directory, self.previous):
            if (directory / "state.json").is_file():
                return directory
        return None

    def exists(self):
        return self._latest() is not None

    def state(self):
        """The saved `{"step", "fingerprint"}`, checked against this run's fingerprint; None without a checkpoint."""
        directory = self._latest()
        if directory is None:
            return None
        try:
            state = json.loads((directory / "state.json").read_text())
            int(state["step"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise CheckpointError(f"The checkpoint {directory} is corrupt ({error}): pass --restart to start over.") from None
        check_fingerprint(state.get("fingerprint", {}), self.fingerprint, f"The checkpoint in {directory}")
        return state

    def step(self):
        """The step the checkpoint reached (0 without one)."""
        state = self.state()
        return 0 if state is None else int(state["step"])

    def restore(self, model):
        """Load the checkpoint into `model` (built and compiled); return the step it reached, or 0 without one."""
        state = self.state()
        if state is None:
            return 0
        directory = self._latest()
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        try:
            model.load_weights(directory / "model.weights.h5")
        except Exception as error:  # h5py and Keras raise OSError, ValueError, KeyError... on a damaged file
            raise CheckpointError(
                f"The checkpoint {directory / 'model.weights.h5'} cannot be read ({type(error).__name__}: "
                f"{str(error)[:120]}): pass --restart to start over."
            ) from None
        # Keras's weights files leave out the seed generators: the masks to come would differ without them.
        # They are matched by position, as the weights are (names get counters within one process).
        for variable, value in zip(_seed_variables(model), state.get("seeds", [])):
            variable.assign(np.asarray(value, variable.dtype))
        return int(state["step"])

    def save(self, model, step):
        """Write `model`'s state at `step` atomically: the previous checkpoint stays whole until this one is."""
        if hasattr(model, "jax_state_sync"):
            model.jax_state_sync()  # on JAX, training runs on copies of the variables until synced
        partial = self.directory.with_name(f"{self.directory.name}.partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        try:
            partial.mkdir(parents=True)
            model.save_weights(partial / "model.weights.h5")
            state = {"step": int(step), "fingerprint": self.fingerprint, "seeds": _seed_states(model)}
            (partial / "state.json").write_text(json.dumps(state))
        except OSError as error:
            shutil.rmtree(partial, ignore_errors=True)
            raise OSError(
                f"Could not write a checkpoint in {partial.parent} ({error.strerror or error}); the previous one is "
                "intact: free some space or pick a writable --output, then rerun to resume."
            ) from None
        if self.directory.exists():
            shutil.rmtree(self.previous, ignore_errors=True)
            self.directory.rename(self.previous)
        partial.rename(self.directory)
        shutil.rmtree(self.previous, ignore_errors=True)

    def delete(self):
        for directory in (self.directory, self.previous):
            shutil.rmtree(directory, ignore_errors=True)

    def callback(self, every, step=0):
        """A Keras callback that saves every `every` steps, when `fit` ends, and on SIGTERM (then stops)."""
        return CheckpointCallback(self, every, step)


class CheckpointCallback(keras.callbacks.Callback):
    """Saves a `Checkpoint` every `every` steps and when `fit` ends; on SIGTERM saves and stops `fit`.

    Not at every epoch's end: with epochs of a few steps (a small data set)
    that would write the model and optimizer state every few steps.

    `step` is the global step training starts from (a resumed run's). After
    `fit` returns, `interrupted` tells whether a signal stopped it.
    """

    def __init__(self, checkpoint, every, step=0):
        super().__init__()
        self.checkpoint = checkpoint
        self.every = every
        self.step = step
        self.saved_step = step
        self.interrupted = False
        self._previous_handler = None

    def on_train_begin(self, logs=None):
        self._previous_handler = signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum, frame):
        self.interrupted = True  # acted on at the end of the current step

    def _save(self):
        self.checkpoint.save(self.model, self.step)
        self.saved_step = self.step

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.interrupted:
            self._save()
            self.model.stop_training = True
        elif self.step % self.every == 0:
            self._save()

    def on_train_end(self, logs=None):
        if self.step != self.saved_step:
            self._save()
        if self._previous_handler is not None:
            signal.signal(signal.SIGTERM, self._previous_handler)


class RunRecord:
    """The finished phases of a run (`{phase: result}` in a JSON file), so a rerun skips them.

    Example:
    >>> record = RunRecord("runs/mine/phases.json", fingerprint)
    >>> if record.get("pretraining") is None: ...; record.put("pretraining", results)
    """

    def __init__(self, path, fingerprint):
        self.path = Path(path)
        self.fingerprint = json.loads(json.dumps(fingerprint))

    def _read(self):
        if not self.path.is_file():
            return {}
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, ValueError) as error:
            raise CheckpointError(f"{self.path} is corrupt ({error}): pass --restart to start over.") from None
        check_fingerprint(saved.get("fingerprint", {}), self.fingerprint, f"The finished phases in {self.path}")
        return saved.get("phases", {})

    def get(self, phase):
        return self._read().get(phase)

    def put(self, phase, value):
        phases = {**self._read(), phase: value}
        partial = self.path.with_suffix(f".partial-{os.getpid()}")
        partial.write_text(json.dumps({"fingerprint": self.fingerprint, "phases": phases}, indent=1, default=str))
        partial.replace(self.path)

    def delete(self):
        self.path.unlink(missing_ok=True)


def _seed_variables(model):
    """The state variables of the model's seed generators, in the model's order."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def _seed_states(model):
    """The states of the model's seed generators, which Keras's weights files leave out."""
    return [np.asarray(v).tolist() for v in _seed_variables(model)]


def check_fingerprint(saved, current, what):
    """Raise `CheckpointError` naming the first differences unless two fingerprints agree."""
    different = _differences(saved, current)
    if different:
        raise CheckpointError(
            f"{what} is from another configuration ({'; '.join(different[:3])}): rerun with the same settings "
            "to resume, pass --restart to start over, or pick another --output."
        )


def _differences(saved, current, prefix=""):
    """`["key: saved -> current", ...]` for every leaf that differs between two nested dicts."""
    out = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key, "(absent)"), current.get(key, "(absent)")
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} then, {b!r} now")
    return out


class ClassifierStore:
    """Fine-tuned classifiers of a run kept as `.keras` files, so that a rerun loads instead of training them.

    Entries live in the run's `RunRecord` (phase `"fine-tuning"`), each with
    the evaluation settings it was trained under; other settings retrain it.

    Example:
    >>> store = ClassifierStore(record, "runs/mine/classifiers", evaluation_config_dict)
    >>> FewLabelEvaluation(task, splits, config, store=store)
    """

    def __init__(self, record, directory, settings):
        self.record = record
        self.directory = Path(directory)
        self.settings = json.loads(json.dumps(settings))

    def load(self, key):
        entry = (self.record.get("fine-tuning") or {}).get(key)
        # In this store's directory, wherever the run folder has moved since.
        path = self.directory / Path(entry["path"]).name if entry else None
        if entry is None or entry["settings"] != self.settings or not path.is_file():
            return None
        return entry["val_accuracy"], load_keras_file(path, "pass --restart to start over.", compile=True)

    def save(self, key, val_accuracy, model):
        self.directory.mkdir(parents=True, exist_ok=True)
        name = "".join(c if c.isalnum() else "_" for c in key).strip("_")
        path = self.directory / f"{name}.keras"
        partial = path.with_name(f"partial-{os.getpid()}-{path.name}")
        model.save(partial)
        partial.replace(path)
        entries = {**(self.record.get("fine-tuning") or {}),
                   key: {"val_accuracy": val_accuracy, "path": str(path), "settings": self.settings}}
        self.record.put("fine-tuning", entries)

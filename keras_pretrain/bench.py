"""`keras-pretrain bench`: training throughput of the objectives on every backend, side by side in one run.

Each measurement runs in a fresh process (a Keras backend is fixed at
import; frameworks do not share the cores between measurements): the
package's `MaskedLanguageModel` and `MaskedAutoencoder`, keras-hub's
`BertMaskedLM` at the same configuration on the same backend, Hugging Face's
`BertForMaskedLM` and `ViTMAEForPreTraining` when `transformers` is installed,
and a matrix product in the dtype policy's compute dtype for the peak MFU is
measured against. The compared models of an objective are all alive at once
and take turns (`run_in_turns`), so the machine's drift reaches them alike.
Every row reports samples/s (tokens/s for text), the median step time after
warm-up, MFU, and the process's peak resident memory.

Example:
>>> rows = run_bench(backends=["jax"], objectives=["mlm"], steps=20)
>>> print(format_table(rows))
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from keras_pretrain.allocator import OPT_OUT, keep_freed_memory

MLM = dict(vocabulary_size=8192, hidden_dim=256, num_layers=4, num_heads=4, intermediate_dim=1024,
           sequence_length=128, batch_size=16, mask_rate=0.15)
MAE = dict(image_size=32, channels=3, patch_size=4, hidden_dim=192, depth=6, num_heads=3, mlp_ratio=4,
           decoder_dim=128, decoder_depth=2, decoder_heads=4, mask_ratio=0.75, batch_size=64)


def parse_sizes(objective, assignments):
    """`["num_layers=12", ...]` (the `--mlm` or `--mae` option) -> `{"num_layers": 12}`, checked against `MLM` or `MAE`.

    Example:
    >>> parse_sizes("mlm", ["num_layers=12", "sequence_length=512"])
    {'num_layers': 12, 'sequence_length': 512}
    """
    from keras_pretrain.config import check, check_fraction, coerce, parse_assignment

    defaults, option = {"mlm": MLM, "mae": MAE}[objective], f"--{objective}"
    sizes = {}
    for key, text in (parse_assignment(item, option, "num_layers=12") for item in assignments):
        check(key in defaults, f"{option} {key}: no such size; the {objective} sizes are {', '.join(defaults)}.")
        value = coerce(text, type(defaults[key]), f"{option} {key}")
        if isinstance(defaults[key], float):  # the masking rates
            check_fraction(value, f"{option} {key}")
        else:
            check(value >= 1, f"{option} {key} must be at least 1; got {value}.")
        sizes[key] = value
    return sizes


def keras_fit_step(model, batch):
    """A function running one training step of a compiled Keras model on a fixed batch, and waiting for it."""
    import numpy as np

    x, y = batch if isinstance(batch, tuple) else (batch, None)

    def step():
        logs = model.train_on_batch(x, y, return_dict=True)
        float(np.asarray(logs["loss"]))  # blocks until the step is done (JAX dispatches asynchronously)

    return step


def mlm_batch(config, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    token_ids = rng.integers(5, config["vocabulary_size"], (config["batch_size"], config["sequence_length"]))
    return {"token_ids": token_ids.astype("int32"), "padding_mask": np.ones_like(token_ids, "int32")}


def bert_backbone(config):
    """The keras-hub `BertBackbone` both Keras MLM measurements train, seeded alike."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    return keras_hub.models.BertBackbone(
        vocabulary_size=config["vocabulary_size"], num_layers=config["num_layers"], num_heads=config["num_heads"],
        hidden_dim=config["hidden_dim"], intermediate_dim=config["intermediate_dim"],
        max_sequence_length=config["sequence_length"], dropout=0.0,
    )


def keras_pretrain_mlm_step(config):
    import keras

    from keras_pretrain.objectives import MaskedLanguageModel

    backbone = bert_backbone(config)
    model = MaskedLanguageModel(backbone, special_token_ids=[0, 1, 2, 3], mask_token_id=4, mask_rate=config["mask_rate"],
                                seed=0)
    length = config["sequence_length"]
    model.build({"token_ids": (None, length), "padding_mask": (None, length)})
    model.compile(optimizer=keras.optimizers.AdamW(1e-4))
    tokens = config["batch_size"] * length
    return keras_fit_step(model, mlm_batch(config)), tokens, model.flops_per_sample(length) * config["batch_size"]


def keras_hub_mlm_step(config):
    import keras
    import keras_hub
    import numpy as np

    backbone = bert_backbone(config)
    model = keras_hub.models.BertMaskedLM(backbone, preprocessor=None)
    model.compile(optimizer=keras.optimizers.AdamW(1e-4), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  weighted_metrics=[])
    batch = mlm_batch(config)
    rng = np.random.default_rng(1)
    slots = int(np.ceil(config["sequence_length"] * config["mask_rate"]))
    positions = np.sort(np.stack([rng.choice(config["sequence_length"], slots, replace=False)
                                  for _ in range(config["batch_size"])]), axis=1).astype("int32")
    x = {**batch, "segment_ids": np.zeros_like(batch["token_ids"]), "mask_positions": positions}
    y = np.take_along_axis(batch["token_ids"], positions, axis=1)
    return keras_fit_step(model, (x, y)), config["batch_size"] * config["sequence_length"], None


def keras_pretrain_mae_step(config):
    import keras
    import numpy as np

    from keras_pretrain.models import ViTEncoder
    from keras_pretrain.objectives import MaskedAutoencoder

    keras.utils.set_random_seed(0)
    encoder = ViTEncoder(image_size=config["image_size"], channels=config["channels"], patch_size=config["patch_size"],
                         hidden_dim=config["hidden_dim"], depth=config["depth"], num_heads=config["num_heads"],
                         mlp_ratio=config["mlp_ratio"])
    model = MaskedAutoencoder(encoder, decoder_dim=config["decoder_dim"], decoder_depth=config["decoder_depth"],
                              decoder_heads=config["decoder_heads"], mask_ratio=config["mask_ratio"],
                              norm_pix_loss=True, seed=0)
    size = config["image_size"]
    model.build((None, size, size, config["channels"]))
    model.compile(optimizer=keras.optimizers.AdamW(1e-4))
    images = np.random.default_rng(0).integers(0, 256, (config["batch_size"], size, size, config["channels"]), dtype="uint8")
    return keras_fit_step(model, images), config["batch_size"], model.flops_per_sample() * config["batch_size"]


def torch_training_step(model, batch, config):
    """A function running one AdamW step of a torch model on `batch` (a dict of tensors) and waiting for it.

    The model and batch go to the GPU when torch has one (Keras's torch backend puts the package's models
    there too); under a reduced-precision `config["dtype_policy"]` the forward pass runs in `torch.autocast`,
    as Hugging Face's Trainer does with `--bf16`.
    """
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    batch = {name: tensor.to(device) for name, tensor in batch.items()}
    # Keras's policy names: "mixed_bfloat16" computes in bfloat16, "float32" in float32.
    compute_dtype = config.get("dtype_policy", "float32").removeprefix("mixed_")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        optimizer.zero_grad()
        with torch.autocast(device, dtype=getattr(torch, compute_dtype), enabled=compute_dtype != "float32"):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        loss.item()  # waits for the step (CUDA runs it asynchronously)

    return step


def transformers_mlm_step(config):
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(
        vocab_size=config["vocabulary_size"], hidden_size=config["hidden_dim"], num_hidden_layers=config["num_layers"],
        num_attention_heads=config["num_heads"], intermediate_size=config["intermediate_dim"],
        max_position_embeddings=config["sequence_length"], hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    ))
    input_ids = torch.tensor(mlm_batch(config)["token_ids"], dtype=torch.long)
    labels = input_ids.clone()
    labels[torch.rand(labels.shape, generator=torch.Generator().manual_seed(0)) >= config["mask_rate"]] = -100
    batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}
    return torch_training_step(model, batch, config), config["batch_size"] * config["sequence_length"], None


def transformers_mae_step(config):
    import torch
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    torch.manual_seed(0)
    model = ViTMAEForPreTraining(ViTMAEConfig(
        image_size=config["image_size"], patch_size=config["patch_size"], num_channels=config["channels"],
        hidden_size=config["hidden_dim"], num_hidden_layers=config["depth"], num_attention_heads=config["num_heads"],
        intermediate_size=config["hidden_dim"] * config["mlp_ratio"], decoder_hidden_size=config["decoder_dim"],
        decoder_num_hidden_layers=config["decoder_depth"], decoder_num_attention_heads=config["decoder_heads"],
        decoder_intermediate_size=config["decoder_dim"] * 4, mask_ratio=config["mask_ratio"], norm_pix_loss=True,
    ))
    pixels = torch.rand(config["batch_size"], config["channels"], config["image_size"], config["image_size"])
    return torch_training_step(model, {"pixel_values": pixels}, config), config["batch_size"], None


def fit_seconds_per_step(model, dataset, steps, warmup):
    """Mean seconds of the last `steps` steps of one `model.fit` of `warmup + steps` steps on `dataset` (repeated).

    One `fit`: the timed steps continue the warm-up's pass over `dataset`
    (a second `fit` would start a new pass, with a new shuffle), so two
    processes building the same seeded data time the same batches.
    """
    from keras_pretrain.pipelines.base import StepEnds

    ends = StepEnds()
    model.fit(dataset.repeat(), steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[ends])
    return (ends.times[-1] - ends.times[warmup - 1]) / steps


def input_cpu_seconds(dataset, batches):
    """CPU seconds per batch (every thread of this process) that `dataset` alone takes to make `batches` batches.

    Where the training step keeps every core busy, that is CPU the step
    loses to its input: a steadier figure of the input's cost than the
    difference between two timed runs, which a shared machine's drift swamps.
    """
    iterator = iter(dataset.repeat())
    next(iterator)  # start-up (threads, the first shuffle buffer) is paid once a pass, not per batch
    start = time.process_time()
    for _ in range(batches):
        next(iterator)
    return (time.process_time() - start) / batches


WORDNET_GLOSSES = 20000  # the WordNet rows read the first this many glosses


def wordnet_recipe(*overrides):
    """`(pipeline, data)` of the WordNet recipe (with `overrides`) on its first `WORDNET_GLOSSES` glosses, with the
    recipe's own vocabulary: learned from every gloss (cached on disk), as a run of the recipe learns it.

    A vocabulary learned from the first glosses only is smaller (936 word pieces against 3,583), and so is the
    model's vocabulary projection, which padded batches compute at more prediction slots a gloss: the measured
    model would not be the recipe's.

    Example:
    >>> pipeline, data = wordnet_recipe("data.batch_by=tokens")
    >>> data.pretraining.tokenizer.vocabulary_size()
    3583
    """
    vocabulary = _wordnet_pipeline(*overrides, every_gloss=True).load_data().pretraining.tokenizer
    pipeline = _wordnet_pipeline(*overrides)
    return pipeline, pipeline.load_data(tokenizer=vocabulary)


def _wordnet_pipeline(*overrides, every_gloss=False):
    from keras_pretrain.pipelines import load_recipe, pipeline_for

    limit = [] if every_gloss else [f"data.max_pretrain_documents={WORDNET_GLOSSES}"]
    return pipeline_for(load_recipe("bert_wordnet", [*limit, *overrides]), verbose=0)


WORDNET_BATCHING = {"wordnet buckets": "length buckets", "wordnet token budget": "length buckets by token budget",
                    "wordnet padded": "padded to 64"}
WORDNET_BLOCKS = 5  # each batching times this many blocks of `steps` batches, the batchings taking turns


def bench_wordnet_batchings(config, steps, warmup):
    """Non-padding tokens/s of the WordNet recipe's model on its pipeline's batches, batched three ways, in one process.

    `"wordnet buckets"`: the recipe's length buckets of 64 glosses;
    `"wordnet token budget"`: the same buckets with `data.batch_by=tokens` (64 x 64
    token slots a batch); `"wordnet padded"`: every batch of 64 padded to 64 tokens.
    One model trains on all three, the batchings taking turns in blocks of
    `steps` batches (`WORDNET_BLOCKS` blocks each), so a machine's drift
    reaches all three alike; each batching's batches (`wordnet_recipe`) are held
    in memory (the input's own cost is the "pipeline input" rows').
    Returns `{batching: (seconds per step, non-padding tokens per step, None)}`.
    """
    by_sequences, data = wordnet_recipe()
    # The same glosses and vocabulary (`data`), batched by token budget.
    by_tokens = _wordnet_pipeline("data.batch_by=tokens")
    tokenizer, length = data.pretraining.tokenizer, by_sequences.config.backbone.sequence_length
    made = {"wordnet buckets": (by_sequences, None), "wordnet token budget": (by_tokens, None),
            "wordnet padded": (by_sequences, [length])}
    timed_batches = WORDNET_BLOCKS * steps
    batches = {}
    for kind, (maker, widths) in made.items():
        dataset = maker.sequences(data.pretraining.corpus(), tokenizer, maker.config.pretrain.batch_size, widths)[0]
        batches[kind] = list(dataset.repeat().take(warmup + timed_batches).as_numpy_iterator())
    model = by_sequences.pretrain_model(tokenizer, 1000)
    steps_on = {kind: [keras_fit_step(model, batch) for batch in batches[kind]] for kind in batches}

    # JAX compiles once per batch shape: meet every shape before timing.
    shapes = {batch["token_ids"].shape: step for kind in batches for batch, step in zip(batches[kind], steps_on[kind])}
    for step in [*shapes.values(), *(step for kind in batches for step in steps_on[kind][:warmup])]:
        step()
    seconds = dict.fromkeys(batches, 0.0)
    for block in range(WORDNET_BLOCKS):
        for kind in batches:
            start = time.perf_counter()
            for step in steps_on[kind][warmup + block * steps:warmup + (block + 1) * steps]:
                step()
            seconds[kind] += time.perf_counter() - start
    return {kind: (seconds[kind] / timed_batches,
                   sum(int(batch["padding_mask"].sum()) for batch in batches[kind][warmup:]) / timed_batches, None)
            for kind in batches}


INPUT_TURNS = 9  # the pipeline and the same batches from memory take turns this many times (a turn: +-15%)


def bench_input_overhead(objective):
    """A recipe's model on its real input pipeline and on the same batches held in memory, taking turns, in one process.

    Each turn fits `warmup + steps` steps on a fresh build of the seeded
    pipeline (a build's first pass: the same batches every turn; every build
    made before timing starts), then on those batches from memory, and times
    the last `steps` steps of each;
    `INPUT_TURNS` turns, each kind's median turn kept. One model in one process, so a machine's drift
    reaches both alike (measured in two processes one after the other, the
    difference moved with the machine by 10% and more). Returns
    `{"pipeline input": (seconds per step, samples per step, None, {"input_cpu_seconds": ...}),
    "in-memory input": (seconds per step, samples per step, None)}`, with
    `input_cpu_seconds` as `input_cpu_seconds` measures it.
    """

    def run(config, steps, warmup):
        from keras_pretrain.pipelines import load_recipe, pipeline_for

        if objective == "mae":
            pipeline = pipeline_for(load_recipe("mae_fashion_mnist"), verbose=0)
            data = pipeline.load_data()

            def batches():
                return pipeline.pretraining_dataset(data.pretraining)[0]

            model = pipeline.pretrain_model(data.pretraining.image_shape, 1000)
        else:
            pipeline, data = wordnet_recipe()

            def batches():
                return pipeline.sequences(data.pretraining.corpus(), data.pretraining.tokenizer,
                                          pipeline.config.pretrain.batch_size)[0]

            model = pipeline.pretrain_model(data.pretraining.tokenizer, 1000)
        memory = batches().take(warmup + steps).cache()
        held = list(memory.as_numpy_iterator())  # fills the cache: memory's passes read memory only
        samples = sum(int(batch["padding_mask"].sum()) if objective == "mlm" else len(batch)
                      for batch in held[warmup:]) / steps
        # Built before any timing, as a run builds its pipeline before training: building traces TensorFlow
        # functions, after which protobuf calls glibc's malloc_trim and the next steps fault their memory in
        # again (keras_pretrain.allocator; recipes/performance.md): a start-up cost, not the input's.
        built = [batches() for _ in range(INPUT_TURNS)]
        fit_seconds_per_step(model, memory, steps, warmup)  # compiles (JAX: once per batch shape) before timing
        turns = {"pipeline input": [], "in-memory input": []}
        for pipeline_batches in built:
            turns["pipeline input"].append(fit_seconds_per_step(model, pipeline_batches, steps, warmup))
            turns["in-memory input"].append(fit_seconds_per_step(model, memory, steps, warmup))
        # The median turn: a slow spell of the machine that hits one turn does not count, a pipeline that
        # stalls the step does (in every turn).
        seconds = {kind: statistics.median(times) for kind, times in turns.items()}
        cpu = {"input_cpu_seconds": input_cpu_seconds(batches(), warmup + steps)}
        return {"pipeline input": (seconds["pipeline input"], samples, None, cpu),
                "in-memory input": (seconds["in-memory input"], samples, None)}

    return run


BENCHES = {
    ("mlm", "wordnet batchings"): bench_wordnet_batchings,
    ("mae", "input overhead"): bench_input_overhead("mae"),
    ("mlm", "input overhead"): bench_input_overhead("mlm"),
}

# The models compared side by side: each makes `(step, samples per step, FLOPs per step or None)`, and their
# processes take turns (`run_in_turns`).
TRAINING_STEPS = {
    ("mlm", "keras-pretrain"): keras_pretrain_mlm_step,
    ("mlm", "keras-hub"): keras_hub_mlm_step,
    ("mlm", "transformers"): transformers_mlm_step,
    ("mae", "keras-pretrain"): keras_pretrain_mae_step,
    ("mae", "transformers"): transformers_mae_step,
}
TURNS = 5  # the compared models' processes take turns this many times, each timing steps / TURNS steps a turn


def _time_in_turns(make_step, config, spec):
    """A compared model's process: warm up, say READY, then time `steps_per_turn` steps at every line on stdin.

    After waiting for its turn a process runs one untimed step first (its
    caches went cold while the others ran). Returns `(median step seconds,
    samples, flops, {"turn_windows": [(start, end), ...]})`, the windows in
    `time.perf_counter()` seconds, a clock every process of the machine shares.
    """
    step, samples, flops = make_step(config)
    for _ in range(spec["warmup"]):
        step()
    print("READY", flush=True)
    times, windows = [], []
    for _ in sys.stdin:
        step()
        began = time.perf_counter()
        for _ in range(spec["steps_per_turn"]):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        windows.append((began, time.perf_counter()))
        print("TURN", flush=True)
    return statistics.median(times), samples, flops, {"turn_windows": windows}


def child(spec):
    """One measurement, in this process: prints a JSON row."""
    objective, implementation = spec["objective"], spec["implementation"]
    if spec.get("dtype_policy", "float32") != "float32":
        import keras

        keras.config.set_dtype_policy(spec["dtype_policy"])
    config = MLM if objective == "mlm" else MAE
    config = {**config, **spec.get("sizes", {}), "dtype_policy": spec.get("dtype_policy", "float32")}
    if implementation == "matmul":
        import keras

        from keras_pretrain.throughput import matmul_peak_flops

        rows = {implementation: {"peak_flops": matmul_peak_flops(), "dtype": keras.config.dtype_policy().compute_dtype}}
    else:
        # A measurement may add fields of its own after (seconds, samples, flops), or measure several
        # implementations at once: {implementation: (seconds, samples, flops, ...)}.
        if (objective, implementation) in TRAINING_STEPS:
            results = _time_in_turns(TRAINING_STEPS[objective, implementation], config, spec)
        else:
            results = BENCHES[objective, implementation](config, spec["steps"], spec["warmup"])
        rows = {}
        for name, (seconds, samples, flops, *extra) in (results if isinstance(results, dict)
                                                          else {implementation: results}).items():
            rows[name] = {"step_seconds": seconds, "samples_per_second": samples / seconds, "flops_per_step": flops,
                          **dict(*extra)}
    for name, row in rows.items():
        row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        row["keeps_freed_memory"] = keep_freed_memory()
        print("BENCH " + json.dumps({"objective": objective, "implementation": name, "backend": spec["backend"], **row}),
              flush=True)


# Processes sharing one GPU (the measuring ones, and the one that starts them): each takes the memory it uses,
# not most of the card up front.
SHARE_THE_GPU = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "TF_FORCE_GPU_ALLOW_GROWTH": "true"}


def _child_command(spec):
    """The command line and environment of the process that measures `spec`."""
    env = {**os.environ, "KERAS_BACKEND": spec["backend"], "TF_CPP_MIN_LOG_LEVEL": "3", **SHARE_THE_GPU}
    if spec["implementation"] in ("keras-hub", "transformers"):
        env[OPT_OUT] = "0"  # measured with glibc's defaults, as their users run them (keras_pretrain.allocator)
    return [sys.executable, "-m", "keras_pretrain.bench", "--child", json.dumps(spec)], env


def _bench_rows(stdout):
    return [json.loads(line[len("BENCH "):]) for line in stdout.splitlines() if line.startswith("BENCH ")]


def _failure(spec, stderr):
    return RuntimeError(f"{spec['implementation']} {spec['objective']} on {spec['backend']} failed: "
                        f"{(stderr.strip().splitlines() or ['no output'])[-1]}")


def run_child(spec, timeout=900):
    """Run the measurement `spec` in a fresh process on its backend; return its rows (most measurements make one)."""
    command, env = _child_command(spec)
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    rows = _bench_rows(result.stdout)
    if rows:
        return rows
    raise _failure(spec, result.stderr)


def run_in_turns(specs, log=print, turns=TURNS, timeout=900):
    """Time the compared models `specs` side by side: one process each, all alive at once, taking turns.

    Each process builds and warms up its model while the others wait (so
    compiling competes with nothing), then they time their steps in turns,
    `turns` times round: a drift of the machine (a noisy neighbour, a
    throttled core) reaches every model alike, where measurements one after
    the other would each meet a different machine. A process that fails or
    does not answer within `timeout` seconds is logged and left out. Returns
    the rows, in the order of `specs`.

    Example:
    >>> spec = {"objective": "mlm", "steps_per_turn": 4, "warmup": 5, "sizes": {}}
    >>> rows = run_in_turns([{**spec, "implementation": "keras-pretrain", "backend": backend}
    ...                      for backend in ("tensorflow", "jax")])
    >>> [row["samples_per_second"] for row in rows]  # tokens/s on each backend, measured in turns
    """
    import tempfile
    import threading

    running = []  # (spec, process, its stderr)

    def skip(entry):
        spec, process, stderr = entry
        process.kill()
        process.wait()
        stderr.seek(0)
        log(f"  skipped: {_failure(spec, stderr.read())}")
        stderr.close()
        running.remove(entry)

    def answers(entry, word):
        watchdog = threading.Timer(timeout, entry[1].kill)
        watchdog.start()
        try:
            if any(line.strip() == word for line in entry[1].stdout):
                return
        finally:
            watchdog.cancel()
        skip(entry)

    try:
        for spec in specs:
            command, env = _child_command(spec)
            stderr = tempfile.TemporaryFile("w+")
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                       text=True, env=env)
            running.append((spec, process, stderr))
            answers(running[-1], "READY")
        for _ in range(turns):
            for entry in list(running):
                try:
                    entry[1].stdin.write("go\n")
                    entry[1].stdin.flush()
                except BrokenPipeError:
                    pass  # it died; `answers` finds the end of its output and says why
                answers(entry, "TURN")
        rows = []
        for entry in list(running):
            entry[1].stdin.close()
            measured = _bench_rows(entry[1].stdout.read())
            if measured:
                entry[1].wait()
                rows += measured
            else:
                skip(entry)
        return rows
    finally:
        for _, process, stderr in running:
            process.kill()
            stderr.close()


def transformers_available():
    try:
        import importlib.util

        return importlib.util.find_spec("transformers") is not None
    except ImportError:
        return False


def run_bench(backends=("tensorflow", "jax", "torch"), objectives=("mlm", "mae"), steps=20, warmup=5, sizes=None,
              real_data=True, dtype_policy="float32", rounds=1, log=print, peak_flops=None):
    """Measure every implementation on every backend, one process each; return the rows (see the module docstring).

    The compared models of an objective take turns (`run_in_turns`), each
    timing `ceil(steps / TURNS)` steps a turn. With `rounds` > 1 the whole
    plan runs that many times, one round after the other, and each row keeps
    its fastest round (`samples_per_second_rounds` lists them all). MFU is
    against `peak_flops` where given (a card's datasheet peak), else against
    a matrix product in the policy's compute dtype measured on each backend.
    """
    for name, value, least in (("steps", steps, 1), ("warmup", warmup, 0), ("rounds", rounds, 1)):
        if value < least:
            raise ValueError(f"{name} must be at least {least} (--{name}); got {value}.")
    if peak_flops is not None and not peak_flops > 0:
        raise ValueError(f"the peak must be a positive number of TFLOP/s (--peak-tflops); got {peak_flops / 1e12:g}.")
    compared = [(objective, "keras-pretrain", backend) for objective in objectives for backend in backends]
    compared += [("mlm", "keras-hub", backend) for backend in backends if "mlm" in objectives]
    if transformers_available():
        compared += [(objective, "transformers", "torch") for objective in objectives]
    real = []
    if real_data:
        # The recipes' own models on their own data: the WordNet batchings on every backend, input on the first.
        real += [("mlm", "wordnet batchings", backend) for backend in backends]
        real += [(objective, "input overhead", backends[0]) for objective in objectives]

    def spec(objective, implementation, backend):
        return {"objective": objective, "implementation": implementation, "backend": backend, "steps": steps,
                "steps_per_turn": -(-steps // TURNS), "warmup": warmup, "sizes": (sizes or {}).get(objective, {}),
                "dtype_policy": dtype_policy}

    fastest, peaks = {}, {}

    def keep(measured):
        for row in measured:
            log(f"  {row['implementation']} {row['objective']} on {row['backend']}: {row['samples_per_second']:,.0f} "
                f"{'tokens' if row['objective'] == 'mlm' else 'images'}/s")
            key = row["objective"], row["implementation"], row["backend"]
            seen = fastest.get(key, {}).get("samples_per_second_rounds", [])
            if key not in fastest or row["step_seconds"] < fastest[key]["step_seconds"]:
                fastest[key] = row
            fastest[key]["samples_per_second_rounds"] = [*seen, row["samples_per_second"]]

    for round_number in range(1, rounds + 1):
        if rounds > 1:
            log(f"Round {round_number} of {rounds}")
        for backend in dict.fromkeys([*backends, *(backend for *_, backend in compared)]):  # Hugging Face: torch
            [row] = run_child({"objective": "mlm", "implementation": "matmul", "backend": backend,
                               "dtype_policy": dtype_policy})
            peak = row["peak_flops"]
            peaks[backend] = max(peak, peaks.get(backend, 0.0))
            log(f"{backend}: {row['dtype']} matmul peak {peak / 1e9:,.0f} GFLOP/s"
                + (f" (MFU against the {peak_flops / 1e12:g} TFLOP/s given)" if peak_flops else ""))
        for objective in objectives:
            log(f"{objective}: {', '.join(f'{i} on {b}' for o, i, b in compared if o == objective)}, taking turns")
            keep(run_in_turns([spec(*row) for row in compared if row[0] == objective], log))
        for measurement in real:
            try:
                keep(run_child(spec(*measurement)))
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                log(f"  skipped: {error}")
    rows = []
    for (objective, implementation, backend), row in fastest.items():  # in the order first measured
        peak = peak_flops or peaks.get(backend) or max(peaks.values())
        flops = row["flops_per_step"] or (_same_model_flops(fastest.values(), objective)
                                          if implementation in ("keras-hub", "transformers") else None)
        row["mfu"] = flops / row["step_seconds"] / peak if flops else None
        row["peak_flops"] = peak
        row["flops_per_step"] = flops
        rows.append(row)
    return rows


def _same_model_flops(rows, objective):
    """Other implementations train the same model: they get the package's FLOP count for it."""
    for other in rows:
        if other["objective"] == objective and other["implementation"] == "keras-pretrain" and other["flops_per_step"]:
            return other["flops_per_step"]
    return None


def format_table(rows):
    """The rows as an aligned text table, with each row's speed as a ratio to keras-hub's and Hugging Face's,
    then the real-data figures: length buckets against padding, and each pipeline's input overhead."""
    reference = {(r["objective"], r["implementation"], r["backend"]): r["samples_per_second"] for r in rows}
    lines = [f"{'objective':<9} {'implementation':<15} {'backend':<11} {'samples/s':>10} {'step ms':>8} {'MFU':>6} "
             f"{'peak MB':>8} {'vs keras-hub':>13} {'vs HF':>6}"]
    models = [r for r in rows if r["implementation"] in ("keras-pretrain", "keras-hub", "transformers")]
    for r in models:
        hub = reference.get((r["objective"], "keras-hub", r["backend"]))
        hf = reference.get((r["objective"], "transformers", "torch"))
        ratio = lambda other: f"{r['samples_per_second'] / other:.2f}x" if other else "-"  # noqa: E731
        mfu = f"{100 * r['mfu']:.0f}%" if r.get("mfu") else "-"
        lines.append(f"{r['objective']:<9} {r['implementation']:<15} {r['backend']:<11} {r['samples_per_second']:>10,.0f} "
                     f"{1000 * r['step_seconds']:>8.1f} {mfu:>6} {r['peak_rss_mb']:>8,.0f} {ratio(hub):>13} {ratio(hf):>6}")
    for backend in dict.fromkeys(r["backend"] for r in rows):
        speeds = {kind: reference[key] for kind in WORDNET_BATCHING if (key := ("mlm", kind, backend)) in reference}
        padded = speeds.pop("wordnet padded", None)
        if padded and speeds:
            figures = [f"{WORDNET_BATCHING[kind]} {speed:,.0f} ({speed / padded:.2f}x)" for kind, speed in speeds.items()]
            lines.append(f"WordNet on {backend}, non-padding tokens/s: {', '.join(figures)}; padded to 64 {padded:,.0f}")
    inputs = {(r["objective"], r["implementation"]): r for r in rows}
    for objective in ("mlm", "mae"):
        if (objective, "pipeline input") in inputs and (objective, "in-memory input") in inputs:
            pipeline = inputs[objective, "pipeline input"]
            real, memory = pipeline["samples_per_second"], inputs[objective, "in-memory input"]["samples_per_second"]
            line = (f"{'WordNet' if objective == 'mlm' else 'Fashion-MNIST'} pipeline input overhead: "
                    f"{real:,.0f} against {memory:,.0f} {'tokens' if objective == 'mlm' else 'images'}/s "
                    f"from memory ({100 * (memory / real - 1):+.1f}%)")
            if pipeline.get("input_cpu_seconds"):
                cpu = pipeline["input_cpu_seconds"]
                line += (f"; the pipeline alone: {1000 * cpu:.1f} ms of CPU a batch, "
                         f"{100 * cpu / pipeline['step_seconds']:.1f}% of a step")
            lines.append(line)
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Measure training throughput (see keras-pretrain bench --help).")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    child(json.loads(args.child))


if __name__ == "__main__":
    main()

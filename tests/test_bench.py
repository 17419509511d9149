import json
import time
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_pretrain import bench, cli

TINY_MLM = {**bench.MLM, "vocabulary_size": 300, "hidden_dim": 16, "num_layers": 1, "num_heads": 2,
            "intermediate_dim": 32, "sequence_length": 16, "batch_size": 4}
TINY_MAE = {**bench.MAE, "image_size": 8, "patch_size": 4, "hidden_dim": 16, "depth": 1, "num_heads": 2,
            "decoder_dim": 8, "decoder_depth": 1, "decoder_heads": 2, "batch_size": 4}


PEAK = [{"peak_flops": 1e12, "dtype": "float32"}]  # what a matmul measurement prints


def row(objective, implementation, backend, samples_per_second):
    return {"objective": objective, "implementation": implementation, "backend": backend,
            "samples_per_second": samples_per_second, "step_seconds": 1 / samples_per_second, "mfu": 0.25,
            "peak_rss_mb": 900.0}


def test_format_table_gives_ratios_to_keras_hub_and_hugging_face():
    rows = [row("mlm", "keras-pretrain", "jax", 3000.0), row("mlm", "keras-hub", "jax", 2000.0),
            row("mlm", "transformers", "torch", 1500.0), row("mlm", "wordnet buckets", "jax", 900.0),
            row("mlm", "wordnet token budget", "jax", 1200.0), row("mlm", "wordnet padded", "jax", 300.0),
            row("mlm", "wordnet buckets", "torch", 500.0), row("mlm", "wordnet padded", "torch", 400.0),
            {**row("mae", "pipeline input", "jax", 95.0), "input_cpu_seconds": 0.0004},
            row("mae", "in-memory input", "jax", 100.0)]
    table = bench.format_table(rows)
    keras_pretrain_line = next(line for line in table.splitlines() if "keras-pretrain" in line)
    assert keras_pretrain_line.split()[-2:] == ["1.50x", "2.00x"]
    assert "25%" in keras_pretrain_line
    assert ("WordNet on jax, non-padding tokens/s: length buckets 900 (3.00x), length buckets by token budget 1,200 "
            "(4.00x); padded to 64 300") in table  # each batching against padding, on its own backend
    assert "WordNet on torch, non-padding tokens/s: length buckets 500 (1.25x); padded to 64 400" in table
    assert "(+5.3%)" in table  # 100 from memory against 95 through the pipeline
    # 0.4 ms of input CPU a batch against a step of 1/95 s
    assert "95 against 100 images/s from memory (+5.3%); the pipeline alone: 0.4 ms of CPU a batch, 3.8% of a step" in table


def test_input_cpu_seconds_counts_the_pipelines_own_cpu_per_batch():
    def busy(x):  # 20 ms of CPU on a tf.data thread
        start = time.thread_time()
        while time.thread_time() - start < 0.02:
            pass
        return x

    numbers = tf.data.Dataset.range(4)
    slow = numbers.map(lambda x: tf.py_function(busy, [x], tf.int64))
    # tf.data may make a batch ahead, outside the clock: half the cost is a bound that still tells 20 ms from none
    assert bench.input_cpu_seconds(slow, 6) >= 0.01
    assert bench.input_cpu_seconds(numbers, 6) < 0.005


def test_a_measurements_own_fields_reach_its_row(monkeypatch, capsys):
    monkeypatch.setitem(bench.BENCHES, ("mae", "pipeline input"),
                        lambda config, steps, warmup: (0.5, 64, None, {"input_cpu_seconds": 0.002}))
    bench.child({"objective": "mae", "implementation": "pipeline input", "backend": "jax", "steps": 1, "warmup": 0})
    printed = json.loads(capsys.readouterr().out.split("BENCH ", 1)[1])
    assert printed["input_cpu_seconds"] == 0.002 and printed["samples_per_second"] == 128


def test_a_measurement_of_several_implementations_prints_a_row_for_each(monkeypatch, capsys):
    monkeypatch.setitem(bench.BENCHES, ("mlm", "wordnet batchings"),
                        lambda config, steps, warmup: {"wordnet buckets": (0.5, 1000, None),
                                                       "wordnet padded": (0.25, 100, None)})
    bench.child({"objective": "mlm", "implementation": "wordnet batchings", "backend": "jax", "steps": 1, "warmup": 0})
    printed = [json.loads(line.split("BENCH ", 1)[1]) for line in capsys.readouterr().out.splitlines()]
    assert [(row["implementation"], row["samples_per_second"]) for row in printed] == [("wordnet buckets", 2000),
                                                                                       ("wordnet padded", 400)]


@pytest.mark.parametrize(
    "objective, implementation, config",
    [("mlm", "keras-pretrain", TINY_MLM), ("mlm", "keras-hub", TINY_MLM), ("mae", "keras-pretrain", TINY_MAE)],
)
def test_each_compared_model_makes_a_training_step(objective, implementation, config):
    step, samples, flops = bench.TRAINING_STEPS[objective, implementation](config)
    step()
    step()
    per_batch = config["batch_size"] * (config["sequence_length"] if objective == "mlm" else 1)
    assert samples == per_batch
    assert (flops is None) == (implementation == "keras-hub")  # keras-hub's row borrows the package's count
    if flops is not None:
        assert flops > 0


def test_fit_timing_is_one_fit_so_runs_with_the_same_seeds_time_the_same_batches():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    fits = []
    fit = model.fit
    model.fit = lambda *args, **kwargs: fits.append(kwargs["steps_per_epoch"]) or fit(*args, **kwargs)
    dataset = tf.data.Dataset.from_tensor_slices((np.zeros((40, 3)), np.zeros((40, 2)))).shuffle(40, seed=0).batch(4)
    assert bench.fit_seconds_per_step(model, dataset, steps=3, warmup=2) > 0
    assert fits == [5]  # a second fit for the timed steps would start a new pass, with a new shuffle


def measured_row(spec, samples_per_second):
    return {**{k: spec[k] for k in ("objective", "implementation", "backend")}, "step_seconds": 64 / samples_per_second,
            "samples_per_second": samples_per_second, "flops_per_step": 1e11, "peak_rss_mb": 900.0}


def test_rounds_keep_each_rows_fastest_and_list_them_all(monkeypatch):
    speeds, compared = iter([100.0, 150.0, 120.0]), []

    def fake_run_in_turns(specs, log):
        compared.append(specs)
        return [measured_row(spec, next(speeds)) for spec in specs]

    monkeypatch.setattr(bench, "run_child", lambda spec: PEAK)  # the matmul peak
    monkeypatch.setattr(bench, "run_in_turns", fake_run_in_turns)
    monkeypatch.setattr(bench, "transformers_available", lambda: False)
    [row] = bench.run_bench(["jax"], ["mae"], steps=18, real_data=False, rounds=3, log=lambda line: None)
    assert row["samples_per_second"] == 150.0 and row["samples_per_second_rounds"] == [100.0, 150.0, 120.0]
    assert row["mfu"] == pytest.approx(1e11 / (64 / 150.0) / 1e12)
    assert compared[0][0]["steps_per_turn"] == 4  # 18 steps in 5 turns: 20 timed, at least as many as asked for
    with pytest.raises(ValueError, match=r"rounds must be at least 1 \(--rounds\); got 0"):
        bench.run_bench(["jax"], ["mae"], rounds=0)
    with pytest.raises(ValueError, match=r"steps must be at least 1 \(--steps\); got 0"):
        bench.run_bench(["jax"], ["mae"], steps=0)
    with pytest.raises(ValueError, match=r"warmup must be at least 0 \(--warmup\); got -1"):
        bench.run_bench(["jax"], ["mae"], warmup=-1)


@pytest.mark.parametrize("assignments, message", [
    (["num_layer=2"], r"--mlm num_layer: no such size; the mlm sizes are vocabulary_size, hidden_dim, num_layers"),
    (["num_layers=abc"], r"--mlm num_layers must be an integer; got 'abc' \(str\)"),
    (["num_layers=2.5"], r"--mlm num_layers must be an integer; got 2.5 \(float\)"),
    (["num_layers=0"], r"--mlm num_layers must be at least 1; got 0\."),
    (["mask_rate=1.5"], r"--mlm mask_rate must be strictly between 0 and 1; got 1.5\."),
    (["mask_rate=1"], r"--mlm mask_rate must be strictly between 0 and 1; got 1\."),
    (["num_layers"], r"--mlm takes KEY=VALUE \(e.g. num_layers=12\); got 'num_layers'"),
])
def test_sizes_are_read_and_checked_against_the_objectives_configuration(assignments, message):
    assert bench.parse_sizes("mlm", ["num_layers=12", "mask_rate=0.2"]) == {"num_layers": 12, "mask_rate": 0.2}
    with pytest.raises(ValueError, match=message):
        bench.parse_sizes("mlm", assignments)


def test_the_cli_checks_sizes_and_the_json_path_before_measuring(monkeypatch, tmp_path, capsys):
    for name, value in bench.SHARE_THE_GPU.items():  # what the command sets, restored after the test
        monkeypatch.setenv(name, value)
    measured = []
    monkeypatch.setattr(bench, "run_bench", lambda *args, **kwargs: measured.append((args, kwargs)) or [])
    assert cli.main(["bench", "--mlm", "num_layer=2"]) == 1
    assert cli.main(["bench", "--json", str(tmp_path / "missing" / "bench.json")]) == 1
    assert "its directory does not exist" in capsys.readouterr().err and measured == []
    assert cli.main(["bench", "--mae", "depth=12", "--peak-tflops", "989", "--json", str(tmp_path / "b.json")]) == 0
    [(args, kwargs)] = measured
    assert args[4] == {"mlm": {}, "mae": {"depth": 12}} and kwargs["peak_flops"] == 989e12
    assert json.loads((tmp_path / "b.json").read_text()) == []


def test_the_compared_models_of_an_objective_take_turns_together(monkeypatch):
    groups = []

    def fake_run_in_turns(specs, log):
        groups.append([(spec["objective"], spec["implementation"], spec["backend"]) for spec in specs])
        return [measured_row(spec, 100.0) for spec in specs]

    peaks = []
    monkeypatch.setattr(bench, "run_child", lambda spec: peaks.append(spec["backend"]) or PEAK)
    monkeypatch.setattr(bench, "run_in_turns", fake_run_in_turns)
    monkeypatch.setattr(bench, "transformers_available", lambda: True)
    bench.run_bench(["tensorflow", "jax"], ["mlm", "mae"], real_data=False, log=lambda line: None)
    assert peaks == ["tensorflow", "jax", "torch"]  # Hugging Face's MFU counts against torch's own peak
    assert groups == [
        [("mlm", "keras-pretrain", "tensorflow"), ("mlm", "keras-pretrain", "jax"), ("mlm", "keras-hub", "tensorflow"),
         ("mlm", "keras-hub", "jax"), ("mlm", "transformers", "torch")],
        [("mae", "keras-pretrain", "tensorflow"), ("mae", "keras-pretrain", "jax"), ("mae", "transformers", "torch")],
    ]


def test_a_reduced_precision_policy_measures_the_peak_in_its_compute_dtype_or_takes_the_cards(monkeypatch):
    matmuls, logged = [], []
    monkeypatch.setattr(bench, "run_child", lambda spec: matmuls.append(spec) or [{"peak_flops": 2e12,
                                                                                   "dtype": "bfloat16"}])
    monkeypatch.setattr(bench, "run_in_turns", lambda specs, log: [measured_row(spec, 100.0) for spec in specs])
    monkeypatch.setattr(bench, "transformers_available", lambda: False)
    [measured] = bench.run_bench(["jax"], ["mae"], real_data=False, dtype_policy="mixed_bfloat16", log=logged.append)
    assert [spec["dtype_policy"] for spec in matmuls] == ["mixed_bfloat16"]
    assert "jax: bfloat16 matmul peak 2,000 GFLOP/s" in logged
    assert measured["peak_flops"] == 2e12 and measured["mfu"] == pytest.approx(1e11 / (64 / 100.0) / 2e12)

    [given] = bench.run_bench(["jax"], ["mae"], real_data=False, dtype_policy="mixed_bfloat16", log=logged.append,
                              peak_flops=989e12)
    assert "jax: bfloat16 matmul peak 2,000 GFLOP/s (MFU against the 989 TFLOP/s given)" in logged
    assert given["peak_flops"] == 989e12 and given["mfu"] == pytest.approx(1e11 / (64 / 100.0) / 989e12)
    with pytest.raises(ValueError, match=r"the peak must be a positive number of TFLOP/s \(--peak-tflops\); got 0"):
        bench.run_bench(["jax"], ["mae"], peak_flops=0.0)


def test_the_matmul_measurement_runs_in_the_policys_compute_dtype(monkeypatch, capsys):
    from keras_pretrain import throughput

    dtypes = []
    measure = throughput.matmul_peak_flops
    monkeypatch.setattr(throughput, "matmul_peak_flops",
                        lambda: dtypes.append(keras.config.dtype_policy().compute_dtype) or measure(size=128, repeats=1))
    try:
        bench.child({"objective": "mlm", "implementation": "matmul", "backend": keras.backend.backend(),
                     "dtype_policy": "mixed_bfloat16"})
    finally:
        keras.config.set_dtype_policy("float32")
    printed = json.loads(capsys.readouterr().out.split("BENCH ", 1)[1])
    assert dtypes == ["bfloat16"] and printed["dtype"] == "bfloat16" and printed["peak_flops"] > 0


def tiny_torch_model():
    """Stands in for a Hugging Face model: `model(**batch).loss`, recording whether autocast was on."""
    import torch

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 4)
            self.autocast = []

        def forward(self, inputs):
            self.autocast.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
            return types.SimpleNamespace(loss=self.linear(inputs).float().square().mean())

    return Model()


@pytest.mark.parametrize("policy, autocast", [("float32", None), ("mixed_bfloat16", "bfloat16")])
def test_hugging_face_steps_run_in_the_policys_precision_and_train(policy, autocast):
    import torch

    model = tiny_torch_model()
    before = model.linear.weight.detach().clone()
    step = bench.torch_training_step(model, {"inputs": torch.ones(2, 4)}, {"dtype_policy": policy})
    step()
    step()
    assert model.autocast == [getattr(torch, autocast) if autocast else None] * 2
    assert not torch.equal(model.linear.weight, before)  # AdamW stepped


def test_real_data_rows_batch_wordnet_three_ways_on_every_backend_and_time_input_on_the_first(monkeypatch):
    measured = []

    def fake_child(spec):
        if spec["implementation"] == "matmul":
            return PEAK
        measured.append((spec["implementation"], spec["backend"]))
        rows_of = {"wordnet batchings": bench.WORDNET_BATCHING, "input overhead": ["pipeline input", "in-memory input"]}
        kinds = rows_of.get(spec["implementation"], [spec["implementation"]])
        return [{"objective": spec["objective"], "implementation": kind, "backend": spec["backend"], "step_seconds": 0.1,
                 "samples_per_second": 10.0, "flops_per_step": None, "peak_rss_mb": 900.0} for kind in kinds]

    monkeypatch.setattr(bench, "run_child", fake_child)
    monkeypatch.setattr(bench, "run_in_turns", lambda specs, log: [])
    monkeypatch.setattr(bench, "transformers_available", lambda: False)
    rows = bench.run_bench(["torch", "jax"], ["mlm"], log=lambda line: None)
    # The three batchings of a backend are measured in one process, so the machine's drift reaches them alike.
    assert [m for m in measured if m[0] == "wordnet batchings"] == [("wordnet batchings", "torch"),
                                                                     ("wordnet batchings", "jax")]
    wordnet = [(row["implementation"], row["backend"]) for row in rows if row["implementation"].startswith("wordnet")]
    assert wordnet == [(kind, backend) for backend in ("torch", "jax") for kind in bench.WORDNET_BATCHING]
    # The pipeline and memory take turns in one process too, on the first backend.
    assert [m for m in measured if "input" in m[0]] == [("input overhead", "torch")]
    assert [r["implementation"] for r in rows if r["backend"] == "torch"][-2:] == ["pipeline input", "in-memory input"]


@pytest.fixture
def small_wordnet_recipe(monkeypatch, tmp_path, wordnet_dir):
    """The bench's WordNet measurements load a tiny WordNet recipe on the test's small WordNet."""
    from keras_pretrain import pipelines

    monkeypatch.setenv("KERAS_PRETRAIN_CACHE", str(tmp_path / "cache"))
    small = ["backbone.num_layers=1", "backbone.hidden_dim=16", "backbone.intermediate_dim=32",
             "backbone.sequence_length=32", "data.bucket_widths=[16, 24]", "pretrain.batch_size=4",
             "tokenizer.vocabulary_size=200", "tokenizer.sample_every=1", f"data.data_dir={wordnet_dir}",
             "evaluation.labels_per_class=2", "evaluation.val_per_class=2", "evaluation.test_per_class=3"]
    load_recipe = pipelines.load_recipe
    monkeypatch.setattr(pipelines, "load_recipe", lambda name, overrides: load_recipe(name, [*overrides, *small]))
    monkeypatch.setattr(bench, "fit_seconds_per_step", lambda model, dataset, steps, warmup: 0.5)


class RecordingModel:
    """Stands in for the recipe's model: records the width and non-padding tokens of each batch it trains on."""

    def __init__(self):
        self.trained = []

    def train_on_batch(self, batch, y, return_dict):
        self.trained.append((batch["token_ids"].shape, int(batch["padding_mask"].sum())))
        return {"loss": 0.0}


@pytest.mark.filterwarnings("ignore:Asked for a vocabulary")
def test_wordnet_batchings_take_turns_and_count_the_tokens_of_the_batches_they_time(monkeypatch, small_wordnet_recipe):
    from keras_pretrain.pipelines import text

    made, model = [], RecordingModel()
    bucketed = text.bucketed_dataset
    monkeypatch.setattr(text, "bucketed_dataset", lambda *args, **kwargs: made.append(kwargs) or bucketed(*args, **kwargs))
    monkeypatch.setattr(text.TextPipeline, "pretrain_model", lambda self, tokenizer, steps: model)
    monkeypatch.setattr(bench, "WORDNET_BLOCKS", 2)
    results = bench.BENCHES["mlm", "wordnet batchings"](None, steps=3, warmup=1)

    assert [(kwargs["batch_by"], kwargs["bucket_widths"]) for kwargs in made] == [
        ("sequences", [16, 24]), ("tokens", [16, 24]), ("sequences", [32])]
    assert list(results) == list(bench.WORDNET_BATCHING)
    timed = model.trained[-2 * 3 * 3:]  # 2 blocks of 3 batches for each of the 3 batchings, taking turns
    for turn, kind in enumerate(bench.WORDNET_BATCHING):
        batches = timed[3 * turn:3 * turn + 3] + timed[9 + 3 * turn:9 + 3 * turn + 3]
        seconds, tokens, flops = results[kind]
        assert seconds > 0 and flops is None
        assert tokens == sum(count for _, count in batches) / 6
        widths = {shape[1] for shape, _ in batches}
        if kind == "wordnet padded":
            assert widths == {32}
        else:
            assert {rows * width for rows, width in (shape for shape, _ in batches)} <= (
                {4 * 16, 4 * 24, 4 * 32} if kind == "wordnet buckets" else {8 * 16, 5 * 24, 4 * 32})


@pytest.mark.filterwarnings("ignore:Asked for a vocabulary")
def test_wordnet_rows_read_the_first_glosses_with_the_vocabulary_the_recipe_learns_from_every_gloss(
        monkeypatch, small_wordnet_recipe):
    from keras_pretrain.pipelines import load_recipe, pipeline_for

    monkeypatch.setattr(bench, "WORDNET_GLOSSES", 30)
    pipeline, data = bench.wordnet_recipe("data.batch_by=tokens")
    recipe_run = pipeline_for(load_recipe("bert_wordnet", []), verbose=0).load_data().pretraining
    assert pipeline.config.data.batch_by == "tokens"
    assert len(list(data.pretraining.corpus())) == 30 < len(list(recipe_run.corpus()))
    assert data.pretraining.tokenizer.get_vocabulary() == recipe_run.tokenizer.get_vocabulary()


@pytest.mark.filterwarnings("ignore:Asked for a vocabulary")
def test_wordnet_batchings_train_the_recipes_model(monkeypatch, small_wordnet_recipe):
    monkeypatch.setattr(bench, "WORDNET_BLOCKS", 1)
    results = bench.BENCHES["mlm", "wordnet batchings"](None, steps=1, warmup=1)
    assert all(seconds > 0 and 0 < tokens <= 4 * 32 for seconds, tokens, _ in results.values())


@pytest.mark.filterwarnings("ignore:Asked for a vocabulary")
def test_the_pipeline_and_memory_take_turns_on_the_same_batches(monkeypatch, small_wordnet_recipe):
    from keras_pretrain.pipelines import text

    fits, events = [], []

    def fit_seconds_per_step(model, dataset, steps, warmup):  # reads the pass a fit would, as `fit` does
        batches = dataset.repeat().skip(warmup).take(steps).as_numpy_iterator()
        fits.append([int(batch["padding_mask"].sum()) for batch in batches])
        events.append("fit")
        return 60.0 if len(fits) == 6 else float(len(fits))  # the n-th fit takes n seconds a step; the 6th is slow

    sequences = text.TextPipeline.sequences
    monkeypatch.setattr(text.TextPipeline, "sequences",
                        lambda self, *args, **kwargs: events.append("build") or sequences(self, *args, **kwargs))
    monkeypatch.setattr(bench, "fit_seconds_per_step", fit_seconds_per_step)
    monkeypatch.setattr(bench, "INPUT_TURNS", 3)
    results = bench.BENCHES["mlm", "input overhead"](None, steps=3, warmup=1)
    # A warm-up fit from memory, then pipeline and memory in turns, every fit timing the same batches.
    assert len(fits) == 7 and all(timed == fits[0] for timed in fits)
    # Memory's batches and each turn's pipeline are built before the first fit (the last build: the CPU measurement).
    assert events == ["build"] * 4 + ["fit"] * 7 + ["build"]
    seconds, tokens, flops, extra = results["pipeline input"]
    assert seconds == 4 and tokens == sum(fits[0]) / 3 and flops is None  # the median of 2, 4 and 60 seconds
    assert extra["input_cpu_seconds"] > 0  # the pipeline's own CPU; memory has no input work
    assert results["in-memory input"] == (5, tokens, None)  # of 3, 5 and 7


def test_compared_models_take_turns_and_a_failing_one_is_left_out():
    def spec(implementation, sizes):
        return {"objective": "mlm", "implementation": implementation, "backend": keras.backend.backend(), "steps": 4,
                "steps_per_turn": 2, "warmup": 1, "sizes": sizes}

    broken = {**TINY_MLM, "vocabulary_size": 2}  # no room for token ids after the 5 special ones
    logged = []
    rows = bench.run_in_turns([spec("keras-pretrain", TINY_MLM), spec("keras-pretrain", broken),
                               spec("keras-hub", TINY_MLM)], log=logged.append, turns=3, timeout=300)
    backend = keras.backend.backend()
    assert logged == [f"  skipped: keras-pretrain mlm on {backend} failed: ValueError: special_token_ids [2, 3, 4] "
                      "are outside the vocabulary [0, 2)."]
    assert [row["implementation"] for row in rows] == ["keras-pretrain", "keras-hub"]
    assert all(row["backend"] == backend and row["samples_per_second"] > 0 and row["peak_rss_mb"] > 0
               for row in rows)
    # keras-hub (and Hugging Face) are measured with glibc's defaults, as their users run them.
    assert [row["keeps_freed_memory"] for row in rows] == [True, False]
    # Turn by turn, one process times its steps while the other waits.
    ours, hubs = (row["turn_windows"] for row in rows)
    assert len(ours) == len(hubs) == 3
    for turn in range(3):
        assert ours[turn][1] <= hubs[turn][0]
        assert turn == 2 or hubs[turn][1] <= ours[turn + 1][0]


def test_a_failing_single_process_measurement_names_itself():
    spec = {"objective": "mae", "implementation": "wordnet batchings", "backend": keras.backend.backend(), "steps": 1,
            "warmup": 0, "sizes": {}}  # no such measurement: WordNet is text
    failed = r"wordnet batchings mae on \w+ failed: KeyError: \('mae', 'wordnet batchings'\)"
    with pytest.raises(RuntimeError, match=failed):
        bench.run_child(spec, timeout=300)

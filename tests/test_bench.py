import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_pretrain import bench

TINY_MLM = {**bench.MLM, "vocabulary_size": 300, "hidden_dim": 16, "num_layers": 1, "num_heads": 2,
            "intermediate_dim": 32, "sequence_length": 16, "batch_size": 4}
TINY_MAE = {**bench.MAE, "image_size": 8, "patch_size": 4, "hidden_dim": 16, "depth": 1, "num_heads": 2,
            "decoder_dim": 8, "decoder_depth": 1, "decoder_heads": 2, "batch_size": 4}


def row(objective, implementation, backend, samples_per_second):
    return {"objective": objective, "implementation": implementation, "backend": backend,
            "samples_per_second": samples_per_second, "step_seconds": 1 / samples_per_second, "mfu": 0.25,
            "peak_rss_mb": 900.0}


def test_format_table_gives_ratios_to_keras_hub_and_hugging_face():
    rows = [row("mlm", "keras-pretrain", "jax", 3000.0), row("mlm", "keras-hub", "jax", 2000.0),
            row("mlm", "transformers", "torch", 1500.0), row("mlm", "wordnet buckets", "jax", 900.0),
            row("mlm", "wordnet padded", "jax", 300.0), row("mae", "pipeline input", "jax", 95.0),
            row("mae", "in-memory input", "jax", 100.0)]
    table = bench.format_table(rows)
    keras_pretrain_line = next(line for line in table.splitlines() if "keras-pretrain" in line)
    assert keras_pretrain_line.split()[-2:] == ["1.50x", "2.00x"]
    assert "25%" in keras_pretrain_line
    assert "(3.00x)" in table  # length buckets against padding
    assert "(+5.3%)" in table  # 100 from memory against 95 through the pipeline


@pytest.mark.parametrize(
    "objective, implementation, config",
    [("mlm", "keras-pretrain", TINY_MLM), ("mlm", "keras-hub", TINY_MLM), ("mae", "keras-pretrain", TINY_MAE)],
)
def test_each_measurement_trains_and_times_steps(objective, implementation, config):
    seconds, samples, flops = bench.BENCHES[objective, implementation](config, steps=2, warmup=1)
    assert seconds > 0
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


def test_rounds_keep_each_rows_fastest_and_list_them_all(monkeypatch):
    speeds = iter([100.0, 150.0, 120.0])

    def fake_child(spec, timeout=900):
        if spec["implementation"] == "matmul":
            return {"peak_flops": 1e12}
        samples_per_second = next(speeds)
        return {**{k: spec[k] for k in ("objective", "implementation", "backend")}, "step_seconds": 64 / samples_per_second,
                "samples_per_second": samples_per_second, "flops_per_step": 1e11, "peak_rss_mb": 900.0}

    monkeypatch.setattr(bench, "run_child", fake_child)
    monkeypatch.setattr(bench, "transformers_available", lambda: False)
    [row] = bench.run_bench(["jax"], ["mae"], real_data=False, rounds=3, log=lambda line: None)
    assert row["samples_per_second"] == 150.0 and row["samples_per_second_rounds"] == [100.0, 150.0, 120.0]
    assert row["mfu"] == pytest.approx(1e11 / (64 / 150.0) / 1e12)
    with pytest.raises(ValueError, match=r"rounds must be at least 1 \(--rounds\); got 0"):
        bench.run_bench(["jax"], ["mae"], rounds=0)


def test_child_process_reports_a_row_on_this_backend():
    spec = {"objective": "mlm", "implementation": "keras-pretrain", "backend": keras.backend.backend(), "steps": 2,
            "warmup": 1, "sizes": TINY_MLM}
    result = bench.run_child(spec, timeout=300)
    assert result["backend"] == keras.backend.backend()
    assert result["samples_per_second"] > 0 and result["peak_rss_mb"] > 0


def test_a_failing_measurement_names_itself():
    spec = {"objective": "mlm", "implementation": "keras-pretrain", "backend": keras.backend.backend(), "steps": 1,
            "warmup": 0, "sizes": {"vocabulary_size": 2}}  # no room for token ids after the 5 special ones
    with pytest.raises(RuntimeError, match="keras-pretrain mlm on"):
        bench.run_child(spec, timeout=300)

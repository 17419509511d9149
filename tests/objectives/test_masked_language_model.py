import math

import keras
import keras_hub
import numpy as np
import pytest
from keras import ops

from keras_pretrain.objectives import MaskedLanguageModel

# A made-up WordPiece vocabulary: 5 special tokens, 35 word starts, 24 "##" continuation pieces.
VOCAB = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"] + [f"w{i}" for i in range(35)] + [f"##p{i}" for i in range(24)]
PAD, CLS, SEP, UNK, MASK = range(5)
WORDS = np.arange(5, 40)
PIECES = np.arange(40, 64)
SPECIAL = [PAD, CLS, SEP, UNK, MASK]


def small_mlm(max_sequence_length=32, **kwargs):
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCAB), num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=max_sequence_length, dropout=0.0,
    )
    return MaskedLanguageModel.from_vocabulary(backbone, VOCAB, **{"seed": 1, **kwargs})


def text_batch(batch, length, min_length, seed=0, pieces=False):
    """[CLS] tokens [SEP] [PAD]...; with `pieces`, words of 1-3 pieces. Returns (token_ids, padding_mask)."""
    rng = np.random.default_rng(seed)
    token_ids = np.zeros((batch, length), "int32")
    for row in token_ids:
        real = rng.integers(min_length, length + 1)
        body = []
        while len(body) < real - 2:
            body.append(rng.choice(WORDS))
            if pieces:
                body.extend(rng.choice(PIECES, rng.integers(0, 3)))
        row[: real] = [CLS, *body[: real - 2], SEP]
    return token_ids, (token_ids != PAD).astype("int32")


def inputs(token_ids, padding_mask):
    return {"token_ids": token_ids, "padding_mask": padding_mask, "segment_ids": np.zeros_like(token_ids)}


def numpy(outputs):
    return {k: ops.convert_to_numpy(v) for k, v in outputs.items()}


def expected_count(token_ids, padding_mask, rate, slots):
    eligible = (padding_mask == 1) & ~np.isin(token_ids, SPECIAL)
    n = eligible.sum(1).astype("float32")
    count = np.clip(np.floor(np.float32(rate) * n + np.float32(0.5)), 1, slots)
    return np.where(n > 0, count, 0), eligible


@pytest.mark.parametrize("rate", [0.15, 0.3])
def test_selection_follows_the_documented_rule_and_rate(rate):
    token_ids, padding_mask = text_batch(512, 128, 40)
    mlm = small_mlm(mask_rate=rate)
    masked = numpy(mlm.mask_tokens(token_ids, padding_mask))
    slots = int(np.ceil(128 * rate))
    count, eligible = expected_count(token_ids, padding_mask, rate, slots)
    np.testing.assert_array_equal(masked["selected"].sum(1), count)
    assert masked["positions"].shape == (512, slots)
    assert masked["selected"].sum() / eligible.sum() == pytest.approx(rate, abs=0.004)


def test_short_sequences_select_at_least_one_token():
    token_ids, padding_mask = text_batch(64, 16, 3)  # 1 to 14 eligible tokens
    masked = numpy(small_mlm().mask_tokens(token_ids, padding_mask))
    assert (masked["selected"].sum(1) >= 1).all()
    np.testing.assert_array_equal(masked["selected"].sum(1), expected_count(token_ids, padding_mask, 0.15, 3)[0])


def test_special_and_padding_tokens_are_never_selected():
    token_ids, padding_mask = text_batch(256, 32, 8)
    rng = np.random.default_rng(1)
    # Sprinkle [UNK], [MASK] and [SEP] among real tokens.
    sprinkle = (rng.random(token_ids.shape) < 0.3) & (padding_mask == 1)
    token_ids = np.where(sprinkle, rng.choice([UNK, MASK, SEP], token_ids.shape), token_ids).astype("int32")
    masked = numpy(small_mlm(mask_rate=0.9).mask_tokens(token_ids, padding_mask))
    selected = masked["selected"] == 1
    assert selected.sum() > 1000
    assert not np.isin(token_ids[selected], SPECIAL).any()
    assert (padding_mask[selected] == 1).all()
    # Weighted slots point at exactly the selected tokens; the targets are their original ids.
    rows = np.arange(256)[:, None]
    used = masked["weights"] == 1
    assert (selected[rows, masked["positions"]] == used).all()
    np.testing.assert_array_equal(masked["targets"][used], token_ids[rows, masked["positions"]][used])


@pytest.mark.parametrize("mask_share, random_share", [(0.8, 0.1), (0.5, 0.3)])
def test_replacement_split(mask_share, random_share):
    token_ids, padding_mask = text_batch(512, 64, 60)
    mlm = small_mlm(mask_rate=0.4, mask_token_rate=mask_share, random_token_rate=random_share)
    masked = numpy(mlm.mask_tokens(token_ids, padding_mask))
    selected = masked["selected"] == 1
    original, corrupted = token_ids[selected], masked["token_ids"][selected]
    assert len(original) > 10000
    np.testing.assert_array_equal(masked["token_ids"][~selected], token_ids[~selected])
    became_mask = corrupted == MASK
    became_other = (corrupted != MASK) & (corrupted != original)
    # A random token equals the original with probability 1 / 59 (the non-special ids).
    assert became_mask.mean() == pytest.approx(mask_share, abs=0.02)
    assert became_other.mean() == pytest.approx(random_share * 58 / 59, abs=0.02)
    assert (~became_mask & ~became_other).mean() == pytest.approx(1 - mask_share - random_share * 58 / 59, abs=0.02)
    assert not np.isin(corrupted[became_other], SPECIAL).any()
    assert len(np.unique(corrupted[became_other])) > 50  # drawn over the whole non-special vocabulary


def words_of(row, length):
    """Word index of every eligible token (a start and the "##" pieces right after it), -1 elsewhere."""
    word, current = np.full(length, -1), -1
    for i, token in enumerate(row):
        if token in PIECES and i > 0 and word[i - 1] >= 0:
            word[i] = current
        elif token in WORDS or token in PIECES:
            current += 1
            word[i] = current
    return word


def test_whole_words_are_selected_together():
    token_ids, padding_mask = text_batch(256, 32, 20, pieces=True)
    mlm = small_mlm(whole_word_masking=True, mask_rate=0.3)
    masked = numpy(mlm.mask_tokens(token_ids, padding_mask))
    slots = int(np.ceil(32 * 0.3))
    partial = 0
    for row, selected in zip(token_ids, masked["selected"]):
        word = words_of(row, 32)
        for w in range(word.max() + 1):
            partial += len(set(selected[word == w])) > 1
    assert partial == 0
    assert masked["selected"].sum(1).max() <= slots
    count, eligible = expected_count(token_ids, padding_mask, 0.3, slots)
    assert (masked["selected"].sum(1) > 0).all()
    # Whole words may go one word past the budget, never past max_predictions.
    assert masked["selected"].sum() / eligible.sum() == pytest.approx(0.3, abs=0.05)


@pytest.mark.parametrize(
    "mask_rate, word_noise, expected",
    [
        (0.5, [0.9, 0.1, 0.2], [1, 2, 3]),  # budget 3 of 6 eligible tokens, 5 slots
        (0.5, [0.1, 0.9, 0.8], [4, 5, 6]),
        (0.5, [0.2, 0.1, 0.9], [1, 2, 3, 5, 6]),  # the last word taken may go past the budget
        (0.2, [0.9, 0.1, 0.2], [5, 6]),  # budget 1, 2 slots: the 3-piece word never fits
    ],
)
def test_whole_word_selection_with_fixed_noise(mask_rate, word_noise, expected):
    # [CLS] w0 ##p0 ##p1 w1 w2 ##p0 [SEP] [PAD] [PAD]: words at positions {1,2,3}, {4}, {5,6}.
    token_ids = np.array([[CLS, 5, 40, 41, 6, 7, 40, SEP, PAD, PAD]], "int32")
    padding_mask = (token_ids != PAD).astype("int32")
    mlm = small_mlm(whole_word_masking=True, mask_rate=mask_rate)
    noise = np.zeros((1, 10), "float32")
    noise[0, :3] = word_noise  # noise[:, w] scores the w-th word
    masked = numpy(mlm.mask_tokens(token_ids, padding_mask, noise=noise))
    np.testing.assert_array_equal(np.flatnonzero(masked["selected"][0]), expected)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="only TensorFlow traces a step whose batch width is unknown (jax compiles each width, "
                           "torch runs eagerly); test_text.py trains on such length buckets on every backend")
def test_whole_word_selection_of_a_width_known_only_at_run_time_is_the_same():
    import tensorflow as tf

    token_ids, padding_mask = text_batch(64, 24, 10, pieces=True)
    noise = np.random.default_rng(0).uniform(size=token_ids.shape).astype("float32")
    mlm = small_mlm(whole_word_masking=True, mask_rate=0.3)
    unknown_width = tf.TensorSpec((None, None), "int32")
    traced = tf.function(lambda t, p, n: mlm.mask_tokens(t, p, noise=n)["selected"],
                         input_signature=[unknown_width, unknown_width, tf.TensorSpec((None, None), "float32")])
    expected = numpy(mlm.mask_tokens(token_ids, padding_mask, noise=noise))["selected"]
    np.testing.assert_array_equal(traced(token_ids, padding_mask, noise).numpy(), expected)
    assert expected.sum() > 0


def test_continuation_after_a_special_token_starts_a_word():
    token_ids = np.array([[CLS, 40, 41, 5, SEP]], "int32")
    mlm = small_mlm(whole_word_masking=True, mask_rate=0.3)  # budget 1: one word
    noise = np.array([[0.9, 0.1, 0.0, 0.0, 0.0]], "float32")
    masked = numpy(mlm.mask_tokens(token_ids, np.ones_like(token_ids), noise=noise))
    np.testing.assert_array_equal(masked["selected"][0], [0, 1, 1, 0, 0])


def test_fed_noise_fixes_the_masks():
    token_ids, padding_mask = text_batch(4, 20, 20)
    mlm = small_mlm()
    noise = np.tile(np.linspace(1, 0, 20, dtype="float32"), (4, 1))  # prefers early tokens
    corruption = np.zeros((4, 20, 2), "float32")  # decision 0: always [MASK]
    first, second = (numpy(mlm(inputs(token_ids, padding_mask), noise=noise, corruption_noise=corruption)) for _ in range(2))
    np.testing.assert_array_equal(first["positions"], [[1, 2, 3]] * 4)  # position 0 is [CLS]
    np.testing.assert_array_equal(first["token_ids"][:, 1:4], MASK)
    np.testing.assert_allclose(first["logits"], second["logits"], atol=1e-6)


def test_masks_differ_between_calls_and_fit_steps():
    token_ids, padding_mask = text_batch(8, 32, 32)
    mlm = small_mlm()
    first, second = (numpy(mlm.mask_tokens(token_ids, padding_mask))["selected"] for _ in range(2))
    assert not np.array_equal(first, second)
    mlm.compile(optimizer="adam")
    before = ops.convert_to_numpy(mlm.seed_generator.state).copy()
    mlm.fit(inputs(token_ids, padding_mask), batch_size=4, epochs=1, verbose=0)
    assert not np.array_equal(before, ops.convert_to_numpy(mlm.seed_generator.state))


def test_logits_only_at_selected_positions():
    token_ids, padding_mask = text_batch(6, 24, 10)
    mlm = small_mlm()
    seen = []
    dense_call = mlm.head_dense.call
    mlm.head_dense.call = lambda x, training=None: seen.append(tuple(x.shape)) or dense_call(x)
    outputs = numpy(mlm(inputs(token_ids, padding_mask)))
    slots = int(np.ceil(24 * 0.15))
    assert outputs["logits"].shape == (6, slots, len(VOCAB))
    assert outputs["positions"].shape == outputs["weights"].shape == outputs["targets"].shape == (6, slots)
    assert seen == [(6, slots, 16)]  # the head never sees the whole sequence


def test_explicit_max_predictions_caps_the_selection():
    token_ids, padding_mask = text_batch(16, 32, 32)
    mlm = small_mlm(mask_rate=0.5, max_predictions=4)
    masked = numpy(mlm.mask_tokens(token_ids, padding_mask))
    assert masked["positions"].shape == (16, 4)
    np.testing.assert_array_equal(masked["selected"].sum(1), 4)
    # A batch narrower than max_predictions (a length bucket) gets one slot per token.
    narrow = numpy(mlm.mask_tokens(token_ids[:, :3], padding_mask[:, :3]))
    assert narrow["positions"].shape == (16, 3)
    # [CLS] and two words: round(0.5 * 2) = 1 token selected, in a used slot.
    np.testing.assert_array_equal(narrow["weights"].sum(1), 1)
    np.testing.assert_array_equal(narrow["selected"].sum(1), 1)


@pytest.mark.skipif(
    keras.backend.backend() == "jax", reason="JAX shapes are static under jit (and float64 needs x64 mode)"
)
@pytest.mark.parametrize("rate", [0.15, 0.2, 0.3])
def test_a_length_known_only_at_run_time_gets_the_static_slot_count(rate):
    mlm = small_mlm(mask_rate=rate)
    for length in (16, 24, 100, 200, 400):
        dynamic = mlm.num_predictions(ops.convert_to_tensor(length))
        assert int(ops.convert_to_numpy(dynamic)) == mlm.num_predictions(length) == math.ceil(length * rate)
    capped = small_mlm(mask_rate=rate, max_predictions=4)
    for length, slots in ((3, 3), (16, 4)):
        dynamic = capped.num_predictions(ops.convert_to_tensor(length))
        assert int(ops.convert_to_numpy(dynamic)) == capped.num_predictions(length) == slots
    with pytest.raises(ValueError, match="The sequence length is unknown: pass max_predictions"):
        mlm.num_predictions(None)


def test_nothing_selectable_gives_zero_loss_not_nan():
    token_ids = np.array([[CLS, SEP, PAD, PAD, PAD, PAD, PAD, PAD]] * 2, "int32")
    mlm = small_mlm()
    x = inputs(token_ids, (token_ids != PAD).astype("int32"))
    outputs = mlm(x)
    assert ops.convert_to_numpy(outputs["weights"]).sum() == 0
    assert float(ops.convert_to_numpy(mlm.compute_loss(x, None, outputs))) == 0.0
    assert float(ops.convert_to_numpy(mlm.masked_token_accuracy.result())) == 0.0


def test_loss_and_accuracy_count_selected_slots_only():
    mlm = small_mlm()
    targets = np.array([[5, 6, 7]], "int32")
    logits = np.full((1, 3, len(VOCAB)), -10.0, "float32")
    logits[0, 0, 5] = logits[0, 1, 30] = logits[0, 2, 30] = 10.0  # right, wrong, wrong
    weights = np.array([[1, 0, 0]], "float32")  # only the first slot is selected
    loss = mlm.compute_loss(None, None, {"logits": logits, "targets": targets, "weights": weights})
    assert float(ops.convert_to_numpy(loss)) == pytest.approx(0.0, abs=1e-6)
    assert float(ops.convert_to_numpy(mlm.masked_token_accuracy.result())) == 1.0
    weights = np.array([[1, 1, 0]], "float32")
    loss = mlm.compute_loss(None, None, {"logits": logits, "targets": targets, "weights": weights})
    assert float(ops.convert_to_numpy(loss)) == pytest.approx(20.0 / 2, rel=1e-4)


def test_accuracy_takes_the_largest_logit_without_argmax(monkeypatch):
    # XLA:CPU's argmax costs many times a max: 2.7 ms of a 13 ms step on jax at a small configuration.
    def argmax(*args, **kwargs):
        raise AssertionError("compute_loss called ops.argmax")

    monkeypatch.setattr(ops, "argmax", argmax)
    mlm = small_mlm()
    targets = np.array([[5, 6, 7]], "int32")
    logits = np.zeros((1, 3, len(VOCAB)), "float32")
    logits[0, 0, 5] = 2.0  # right
    logits[0, 1, [3, 6]] = 2.0  # a tie with the target: right
    logits[0, 2, 30] = 2.0  # wrong
    mlm.compute_loss(None, None, {"logits": logits, "targets": targets, "weights": np.ones((1, 3), "float32")})
    assert float(ops.convert_to_numpy(mlm.masked_token_accuracy.result())) == pytest.approx(2 / 3)


def test_the_loss_reads_one_row_of_logits_per_slot():
    # On torch, Keras runs the cross-entropy of 3-D logits on a strided view of them, 4x slower.
    mlm = small_mlm()
    token_ids, padding_mask = text_batch(4, 16, 6)
    outputs = mlm(inputs(token_ids, padding_mask))
    shapes = []
    loss_call = mlm.token_loss.call
    mlm.token_loss.call = lambda targets, logits: shapes.append(tuple(logits.shape)) or loss_call(targets, logits)
    mlm.compute_loss(None, None, outputs)
    slots = ops.shape(outputs["logits"])[1]
    assert shapes == [(4 * slots, len(VOCAB))]


def test_output_projection_is_tied_to_the_token_embedding():
    mlm = small_mlm()
    token_ids, padding_mask = text_batch(2, 16, 16)
    mlm(inputs(token_ids, padding_mask))
    embedding = mlm.backbone.token_embedding.embeddings
    assert mlm.output_kernel is None
    assert sum(tuple(w.shape) in [(16, len(VOCAB)), (len(VOCAB), 16)] for w in mlm.trainable_weights) == 1
    hidden = np.random.default_rng(0).normal(size=(2, 16, 16)).astype("float32")
    positions = np.array([[1, 2], [3, 4]], "int32")
    before = ops.convert_to_numpy(mlm.predict_tokens(hidden, positions))
    gathered = hidden[np.arange(2)[:, None], positions]
    x = ops.convert_to_numpy(mlm.head_norm(mlm.head_dense(gathered)))
    bias = ops.convert_to_numpy(mlm.output_bias)
    np.testing.assert_allclose(before, x @ ops.convert_to_numpy(embedding).T + bias, atol=1e-5)
    embedding.assign(embedding + 1.0)
    after = ops.convert_to_numpy(mlm.predict_tokens(hidden, positions))
    np.testing.assert_allclose(after, x @ ops.convert_to_numpy(embedding).T + bias, atol=1e-5)
    assert not np.allclose(before, after)


def test_untied_projection_has_its_own_kernel():
    mlm = small_mlm(tie_weights=False)
    assert tuple(mlm.output_kernel.shape) == (16, len(VOCAB))


def test_fit_on_a_repeated_batch_reduces_loss():
    token_ids, padding_mask = text_batch(2, 16, 16)
    x = inputs(np.repeat(token_ids, 16, axis=0), np.repeat(padding_mask, 16, axis=0))
    mlm = small_mlm(mask_rate=0.3)
    mlm.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = mlm.fit(x, batch_size=32, epochs=30, verbose=0).history
    assert np.mean(history["loss"][-5:]) < 0.6 * np.mean(history["loss"][:3])
    assert np.mean(history["masked_token_accuracy"][-5:]) > np.mean(history["masked_token_accuracy"][:3])


def test_whole_word_masking_trains_under_jit():
    token_ids, padding_mask = text_batch(8, 16, 10, pieces=True)
    mlm = small_mlm(whole_word_masking=True)
    mlm.compile(optimizer="adam", jit_compile=keras.backend.backend() != "torch")
    history = mlm.fit(inputs(token_ids, padding_mask), batch_size=4, epochs=2, verbose=0).history
    assert np.isfinite(history["loss"]).all()


def test_save_and_load_round_trip(tmp_path):
    mlm = small_mlm(whole_word_masking=True, mask_rate=0.2)
    token_ids, padding_mask = text_batch(4, 20, 12, pieces=True)
    noise = np.random.default_rng(0).random((4, 20)).astype("float32")
    corruption = np.random.default_rng(1).random((4, 20, 2)).astype("float32")
    x = inputs(token_ids, padding_mask)
    expected = numpy(mlm(x, noise=noise, corruption_noise=corruption))
    mlm.save(tmp_path / "mlm.keras")
    loaded = keras.saving.load_model(tmp_path / "mlm.keras")
    actual = numpy(loaded(x, noise=noise, corruption_noise=corruption))
    np.testing.assert_allclose(actual["logits"], expected["logits"], atol=1e-5)
    np.testing.assert_array_equal(actual["token_ids"], expected["token_ids"])
    assert loaded.mask_rate == 0.2 and loaded.whole_word_masking
    assert loaded.continuation_token_ids == list(PIECES) and loaded.special_token_ids == SPECIAL
    assert loaded.output_kernel is None


def test_from_vocabulary_reads_the_ids():
    mlm = small_mlm(whole_word_masking=True)
    assert mlm.special_token_ids == SPECIAL and mlm.mask_token_id == MASK
    assert mlm.continuation_token_ids == list(PIECES)
    assert small_mlm().continuation_token_ids is None
    with pytest.raises(ValueError, match=r"\['\[MASK\]'\] are not in the vocabulary"):
        MaskedLanguageModel.from_vocabulary(small_mlm().backbone, VOCAB[:4] + ["x"] * 60)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mask_rate": 0.0}, "mask_rate must be strictly between 0 and 1"),
        ({"mask_rate": 1.0}, "mask_rate must be strictly between 0 and 1"),
        ({"mask_rate": -0.2}, "mask_rate must be strictly between 0 and 1"),
        ({"mask_token_rate": 0.8, "random_token_rate": 0.3}, r"mask_token_rate \+ random_token_rate must be at most 1"),
        ({"random_token_rate": -0.1}, "random_token_rate must be between 0 and 1"),
        ({"max_predictions": 0}, "max_predictions must be a positive integer"),
        ({"whole_word_masking": True, "continuation_token_ids": None}, "whole_word_masking needs continuation_token_ids"),
        ({"special_token_ids": [0, 99]}, r"special_token_ids \[99\] are outside the vocabulary"),
    ],
)
def test_bad_settings_are_clear_errors(kwargs, message):
    backbone = small_mlm().backbone
    settings = {"special_token_ids": SPECIAL, "mask_token_id": MASK, **kwargs}
    with pytest.raises(ValueError, match=message):
        MaskedLanguageModel(backbone, **settings)

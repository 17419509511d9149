"""Masked language modeling (BERT, with RoBERTa's dynamic masking) as a `keras.Model` you `fit` on token ids."""

import math
import numbers

import keras
import numpy as np
from keras import ops

from keras_pretrain.distribute import replica_uniform
from keras_pretrain.models.flat_projections import flat_projections
from keras_pretrain.models.text_backbone import sequence_output
from keras_pretrain.models.tracing import TracesOnce
from keras_pretrain.objectives.masking import gather_tokens
from keras_pretrain.objectives.xla import CompilesWithXla
from keras_pretrain.throughput import count_parameters, transformer_flops

SPECIAL_TOKENS = ("[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]")


@keras.saving.register_keras_serializable(package="keras_pretrain")
class MaskedLanguageModel(CompilesWithXla, TracesOnce, keras.Model):
    """Masked language model pre-training around a keras-hub text backbone.

    Takes the dict a `keras_hub.models.BertBackbone` takes: `token_ids`,
    `padding_mask` and (optional, zeros if absent) `segment_ids`. Masks are
    drawn inside `call` from a `keras.random.SeedGenerator`, so every step
    (and every epoch over the same sequence) masks afresh on every backend.

    Selection rule, per sequence: a token is eligible unless it is padding or
    one of `special_token_ids` (the mask token always counts as special). With
    `n` eligible tokens, the number selected is
    `min(max_predictions, max(1, floor(mask_rate * n + 0.5)))`, or 0 when
    `n == 0`: round-half-up of `mask_rate * n`, at least one token as in BERT's
    `create_pretraining_data`, never more than `max_predictions`. The tokens
    are the eligible ones with the highest random scores. Of the selected
    tokens, a `mask_token_rate` share (drawn per token) becomes the mask token,
    a `random_token_rate` share a uniformly drawn non-special token, and the
    rest stay unchanged.

    With `whole_word_masking`, words are selected instead of word pieces: a
    word is an eligible token that is not a continuation piece (or follows a
    non-eligible token) plus the continuation pieces right after it
    (`continuation_token_ids`, the `##` pieces of a WordPiece vocabulary).
    Words are taken in random order while the tokens taken so far are fewer
    than the budget above, so the last word may go over the budget; taking
    stops before a word that would go over `max_predictions`, and words longer
    than `max_predictions` are never taken. Whole-word selection costs
    `O(batch * seq_len**2)` memory, like one attention map.

    `max_predictions` (default `ceil(seq_len * mask_rate)`, which the rule
    above never exceeds for token masking) fixes the number of prediction
    slots (a batch narrower than that, a length bucket, gets one slot per
    token): vocabulary logits are computed only at the selected positions
    (gathered hidden states -> dense + gelu -> layer norm -> projection), with
    the projection tied to the backbone's token embedding matrix
    (`tie_weights=True`: logits = h @ embeddings^T + bias).

    `call` returns a dict: `"logits"` `(batch, max_predictions, vocab)`;
    `"positions"`, `"weights"` and `"targets"`, each `(batch,
    max_predictions)`: the slot's position in the sequence, 1 where the slot
    holds a selected token (0 for unused slots), and the original token id
    there; and `"token_ids"`, the corrupted input. Pass `noise`
    (floats, `(batch, seq_len)`; higher is selected first; with whole-word
    masking `noise[:, w]` scores the w-th word) and `corruption_noise` (uniform,
    `(batch, seq_len, 2)`: mask/random/keep decision, random token choice) to
    fix the masks, as tests and parity checks do.

    The loss is sparse cross-entropy over selected tokens only, averaged over
    their number (0, not NaN, for a batch that selects nothing); fit logs also
    show `masked_token_accuracy`: the share of selected tokens whose logit is
    the largest of their slot's (a tie counts as right).

    Example:
    >>> backbone = keras_hub.models.BertBackbone(vocabulary_size=vocab_size, num_layers=2,
    ...     num_heads=2, hidden_dim=64, intermediate_dim=128, max_sequence_length=128)
    >>> mlm = MaskedLanguageModel.from_vocabulary(backbone, tokenizer.get_vocabulary(),
    ...     whole_word_masking=True)
    >>> mlm.compile(optimizer="adamw")
    >>> mlm.fit(packed_dataset(corpus, tokenizer, sequence_length=128), epochs=1)  # no labels
    >>> pretrained = mlm.backbone
    """

    def __init__(
        self,
        backbone,
        special_token_ids,
        mask_token_id,
        mask_rate=0.15,
        mask_token_rate=0.8,
        random_token_rate=0.1,
        max_predictions=None,
        whole_word_masking=False,
        continuation_token_ids=None,
        tie_weights=True,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0.0 < mask_rate < 1.0:
            raise ValueError(f"mask_rate must be strictly between 0 and 1; got {mask_rate}.")
        for name, rate in (("mask_token_rate", mask_token_rate), ("random_token_rate", random_token_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1; got {rate}.")
        if mask_token_rate + random_token_rate > 1.0 + 1e-9:
            raise ValueError(
                f"mask_token_rate + random_token_rate must be at most 1 (the rest of the selected tokens "
                f"stay unchanged); got {mask_token_rate} + {random_token_rate} = "
                f"{mask_token_rate + random_token_rate}."
            )
        if max_predictions is not None and (int(max_predictions) != max_predictions or max_predictions < 1):
            raise ValueError(f"max_predictions must be a positive integer or None; got {max_predictions}.")
        if whole_word_masking and continuation_token_ids is None:
            raise ValueError(
                "whole_word_masking needs continuation_token_ids (the ids of '##' pieces); "
                "MaskedLanguageModel.from_vocabulary derives them from a WordPiece vocabulary."
            )
        embedding = getattr(backbone, "token_embedding", None)
        vocabulary_size = getattr(backbone, "vocabulary_size", None) or getattr(embedding, "input_dim", None)
        if vocabulary_size is None:
            raise ValueError(f"{type(backbone).__name__} has no vocabulary_size or token_embedding to read it from.")
        if tie_weights and not hasattr(embedding, "embeddings"):
            raise ValueError(
                f"tie_weights=True needs backbone.token_embedding with an embeddings matrix; "
                f"{type(backbone).__name__} has none. Pass tie_weights=False."
            )

        special_token_ids = sorted({int(i) for i in special_token_ids} | {int(mask_token_id)})
        continuation_token_ids = None if continuation_token_ids is None else sorted({int(i) for i in continuation_token_ids})
        for name, ids in (("special_token_ids", special_token_ids), ("continuation_token_ids", continuation_token_ids or [])):
            bad = [i for i in ids if not 0 <= i < vocabulary_size]
            if bad:
                raise ValueError(f"{name} {bad[:5]} are outside the vocabulary [0, {vocabulary_size}).")
        # Lookup tables indexed by token id; numpy here, constants in call.
        self._special = np.zeros(vocabulary_size, bool)
        self._special[special_token_ids] = True
        self._non_special = np.flatnonzero(~self._special).astype("int32")
        if not len(self._non_special):
            raise ValueError("Every token id is special: nothing could ever be selected or drawn.")
        self._continuation = np.zeros(vocabulary_size, bool)
        self._continuation[continuation_token_ids or []] = True

        self.backbone = backbone
        self.vocabulary_size = vocabulary_size
        self.special_token_ids = special_token_ids
        self.mask_token_id = int(mask_token_id)
        self.mask_rate = mask_rate
        self.mask_token_rate = mask_token_rate
        self.random_token_rate = random_token_rate
        self.max_predictions = None if max_predictions is None else int(max_predictions)
        self.whole_word_masking = whole_word_masking
        self.continuation_token_ids = continuation_token_ids
        self.tie_weights = tie_weights
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

        hidden_dim = embedding.output_dim if embedding is not None else backbone.hidden_dim
        self.hidden_dim = hidden_dim
        initializer = keras.initializers.TruncatedNormal(stddev=0.02)  # BERT's
        self.head_dense = keras.layers.Dense(hidden_dim, activation="gelu", kernel_initializer=initializer, name="head_dense")
        self.head_norm = keras.layers.LayerNormalization(epsilon=1e-12, name="head_norm")
        self.output_bias = self.add_weight(name="output_bias", shape=(vocabulary_size,), initializer="zeros")
        self.output_kernel = None
        if not tie_weights:
            self.output_kernel = self.add_weight(
                name="output_kernel", shape=(hidden_dim, vocabulary_size), initializer=initializer
            )
        self.masked_token_accuracy = keras.metrics.Mean(name="masked_token_accuracy")
        self.token_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="mean_with_sample_weight")

    @classmethod
    def from_vocabulary(
        cls, backbone, vocabulary, special_tokens=SPECIAL_TOKENS, mask_token="[MASK]", suffix_indicator="##", **kwargs
    ):
        """Build from a WordPiece vocabulary (a list of token strings, id order).

        Special, mask and continuation ids are looked up in the vocabulary;
        continuation ids are passed only with `whole_word_masking=True`.

        >>> mlm = MaskedLanguageModel.from_vocabulary(backbone, tokenizer.get_vocabulary())
        """
        index = {token: i for i, token in enumerate(vocabulary)}
        missing = [token for token in dict.fromkeys((*special_tokens, mask_token)) if token not in index]
        if missing:
            raise ValueError(f"Tokens {missing} are not in the vocabulary (its first entries: {list(vocabulary[:8])}).")
        if kwargs.get("whole_word_masking"):
            kwargs.setdefault(
                "continuation_token_ids",
                [i for i, token in enumerate(vocabulary) if token.startswith(suffix_indicator) and token != suffix_indicator],
            )
        return cls(
            backbone,
            special_token_ids=[index[token] for token in special_tokens],
            mask_token_id=index[mask_token],
            **kwargs,
        )

    def build(self, input_shape):
        if not self.backbone.built:
            self.backbone.build(input_shape)
        self.head_dense.build((None, None, self.hidden_dim))
        self.head_norm.build((None, None, self.hidden_dim))
        self.built = True

    def flops_per_sample(self, sequence_length):
        """Training FLOPs per sequence of `sequence_length` tokens: the backbone's layers on every token, the
        vocabulary projection at the prediction slots only (embedding lookups cost no multiplications)."""
        backbone = self.backbone
        embeddings = {id(v) for layer in backbone.layers if "embedding" in layer.name for v in layer.trainable_weights}
        layers = sum(int(np.prod(v.shape)) for v in backbone.trainable_weights if id(v) not in embeddings)
        slots = self.num_predictions(sequence_length)
        head = 6 * (count_parameters(self.head_dense, self.head_norm) + self.hidden_dim * self.output_bias.shape[0]) * slots
        return transformer_flops(layers, sequence_length, backbone.num_layers, self.hidden_dim) + head

    def num_predictions(self, sequence_length):
        """Prediction slots per sequence for inputs of `sequence_length` tokens (a tensor if that is one)."""
        static = isinstance(sequence_length, numbers.Integral)
        if self.max_predictions is None:
            if sequence_length is None:
                raise ValueError("The sequence length is unknown: pass max_predictions explicitly.")
            if not static:
                # A length known only when the graph runs (TensorFlow, batches of several widths);
                # float64 rounds as Python does, so every backend gets the same slot count.
                return ops.cast(ops.ceil(ops.cast(sequence_length, "float64") * self.mask_rate), "int32")
            return math.ceil(sequence_length * self.mask_rate)
        # Batches narrower than max_predictions (length buckets) get one slot per token.
        if sequence_length is None:
            return self.max_predictions
        if static:
            return min(self.max_predictions, sequence_length)
        return ops.minimum(ops.cast(sequence_length, "int32"), self.max_predictions)

    def mask_tokens(self, token_ids, padding_mask, noise=None, corruption_noise=None):
        """Select and corrupt tokens; the masking half of `call`, without the backbone.

        Returns `{"token_ids", "positions", "weights", "targets"}` as described
        in the class docstring, plus `"selected"`, `(batch, seq_len)`, 1 where
        a token was selected.
        """
        token_ids = ops.cast(token_ids, "int32")
        batch_size, length = ops.shape(token_ids)
        slots = self.num_predictions(length)
        special = ops.take(ops.convert_to_tensor(self._special), token_ids, axis=0)
        eligible = ops.logical_and(ops.not_equal(ops.cast(padding_mask, "int32"), 0), ops.logical_not(special))
        if noise is None:
            noise = replica_uniform((batch_size, length), seed=self.seed_generator)
        if corruption_noise is None:
            corruption_noise = replica_uniform((batch_size, length, 2), seed=self.seed_generator)
        noise = ops.cast(noise, "float32")
        corruption_noise = ops.cast(corruption_noise, "float32")

        count = ops.sum(ops.cast(eligible, "float32"), axis=1)
        budget = ops.minimum(ops.maximum(ops.floor(self.mask_rate * count + 0.5), 1.0), ops.cast(slots, "float32"))
        budget = ops.where(count > 0, budget, 0.0)[:, None]
        if self.whole_word_masking:
            selected = self._select_words(token_ids, eligible, noise, budget, slots)
        else:
            # Rank eligible tokens by score; ineligible ones sort last.
            scores = ops.where(eligible, noise, float("-inf"))
            rank = ops.argsort(ops.argsort(-scores, axis=1), axis=1)
            selected = ops.logical_and(eligible, ops.cast(rank, "float32") < budget)

        decision, pick = corruption_noise[..., 0], corruption_noise[..., 1]
        num_choices = len(self._non_special)
        choice = ops.minimum(ops.cast(ops.floor(pick * num_choices), "int32"), num_choices - 1)
        random_ids = ops.take(ops.convert_to_tensor(self._non_special), choice, axis=0)
        to_mask = ops.logical_and(selected, decision < self.mask_token_rate)
        to_random = ops.logical_and(
            selected,
            ops.logical_and(decision >= self.mask_token_rate, decision < self.mask_token_rate + self.random_token_rate),
        )
        corrupted = ops.where(to_mask, self.mask_token_id, ops.where(to_random, random_ids, token_ids))

        # Selected positions first (in sequence order), then unselected filler slots.
        index = ops.cast(ops.arange(length), "float32")
        key = ops.where(selected, 2.0 * ops.cast(length, "float32") - index, -index)
        _, positions = ops.top_k(key, k=slots)
        positions = ops.cast(positions, "int32")
        selected = ops.cast(selected, "float32")
        return {
            "token_ids": corrupted,
            "positions": positions,
            "weights": ops.take_along_axis(selected, positions, axis=1),
            "targets": ops.take_along_axis(token_ids, positions, axis=1),
            "selected": selected,
        }

    def _select_words(self, token_ids, eligible, noise, budget, slots):
        length = ops.shape(token_ids)[1]  # a tensor where TensorFlow traces batches of several widths
        continuation = ops.take(ops.convert_to_tensor(self._continuation), token_ids, axis=0)
        previous_eligible = ops.concatenate([ops.zeros_like(eligible[:, :1]), eligible[:, :-1]], axis=1)
        starts = ops.logical_and(eligible, ops.logical_not(ops.logical_and(continuation, previous_eligible)))
        word = ops.cumsum(ops.cast(starts, "int32"), axis=1) - 1
        # Ineligible tokens go to an extra class that is sliced away, so they belong to no word.
        word = ops.where(eligible, word, length)
        word_length = ops.sum(ops.one_hot(word, length + 1, dtype="float32")[..., :length], axis=1)
        scores = ops.where(word_length > 0, noise, float("-inf"))
        order = ops.argsort(-scores, axis=1)
        # Words longer than the slots can never be taken: they must not use up the budget.
        taken_length = ops.take_along_axis(word_length, order, axis=1)
        slots = ops.cast(slots, "float32")
        taken_length = ops.where(taken_length <= slots, taken_length, 0.0)
        taken = ops.cumsum(taken_length, axis=1)
        chosen = ops.logical_and(ops.logical_and(taken_length > 0, taken - taken_length < budget), taken <= slots)
        chosen = ops.take_along_axis(ops.cast(chosen, "float32"), ops.argsort(order, axis=1), axis=1)
        chosen_token = ops.take_along_axis(chosen, ops.minimum(word, length - 1), axis=1)
        return ops.logical_and(eligible, chosen_token > 0)

    def predict_tokens(self, hidden, positions):
        """Vocabulary logits `(batch, slots, vocab)` at `positions` of `hidden` `(batch, seq_len, width)`."""
        x = self.head_norm(self.head_dense(gather_tokens(hidden, positions)))
        if self.tie_weights:
            kernel = ops.transpose(self.backbone.token_embedding.embeddings)
        else:
            kernel = self.output_kernel
        return ops.matmul(x, ops.cast(kernel, x.dtype)) + ops.cast(self.output_bias, x.dtype)

    @flat_projections()
    def call(self, inputs, noise=None, corruption_noise=None, training=False):
        masked = self.mask_tokens(inputs["token_ids"], inputs["padding_mask"], noise, corruption_noise)
        hidden = sequence_output(
            self.backbone, masked["token_ids"], inputs["padding_mask"], inputs.get("segment_ids"), training
        )
        return {
            "logits": self.predict_tokens(hidden, masked["positions"]),
            "positions": masked["positions"],
            "weights": masked["weights"],
            "targets": masked["targets"],
            "token_ids": masked["token_ids"],
        }

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        # One row per prediction slot: on torch, Keras moves the class axis of 3-D logits next to the batch
        # and runs the cross-entropy on that strided view, 4x slower than on rows.
        logits = ops.reshape(ops.cast(y_pred["logits"], "float32"), (-1, self.vocabulary_size))
        targets = ops.reshape(ops.cast(y_pred["targets"], "int32"), (-1,))
        weights = ops.reshape(ops.cast(y_pred["weights"], "float32"), (-1,))
        # Right where the target's logit is the row's largest (a tie counts): XLA:CPU's argmax, a reduction
        # that carries indices, costs many times a max over the same logits.
        target_logits = ops.take_along_axis(logits, targets[:, None], axis=1)[:, 0]
        correct = ops.cast(target_logits >= ops.max(logits, axis=-1), "float32")
        self.masked_token_accuracy.update_state(correct, sample_weight=weights)
        # Averaged over the selected tokens (0, not NaN, when there are none); a Keras loss also
        # scales itself for tf.distribute. Each replica averages over its own selected tokens.
        return self.token_loss(targets, logits, sample_weight=weights)

    def get_config(self):
        return {
            **super().get_config(),
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "special_token_ids": self.special_token_ids,
            "mask_token_id": self.mask_token_id,
            "mask_rate": self.mask_rate,
            "mask_token_rate": self.mask_token_rate,
            "random_token_rate": self.random_token_rate,
            "max_predictions": self.max_predictions,
            "whole_word_masking": self.whole_word_masking,
            "continuation_token_ids": self.continuation_token_ids,
            "tie_weights": self.tie_weights,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)

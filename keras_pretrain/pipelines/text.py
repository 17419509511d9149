"""The text pipeline: masked language modeling on any text, then few-label classification and export.

Example (a CSV with `text` and `label` columns, plus a folder of books):
>>> from keras_pretrain.pipelines import TextPipelineConfig, TextPipeline, TextDataConfig
>>> config = TextPipelineConfig(name="tickets", data=TextDataConfig(labelled="tickets.csv", unlabeled=["books/"]))
>>> results = TextPipeline(config).run()        # pre-train, evaluate on few labels, export
>>> results["pretrained_accuracy"], results["baseline_accuracy"]
"""

import dataclasses
import itertools
from pathlib import Path

import keras
import keras_hub
import numpy as np
import tensorflow as tf

from keras_pretrain import plots
from keras_pretrain.baselines import fit_tfidf
from keras_pretrain.config import check, check_divisible, check_fraction, check_sizes, suggest
from keras_pretrain.data.labelled_text import labelled_text_source
from keras_pretrain.data.splits import split_labelled
from keras_pretrain.data.text import (
    BATCH_BY,
    MIN_SEQUENCE_LENGTH,
    TextCorpus,
    bucketed_dataset,
    packed_dataset,
    text_corpus,
    train_word_piece_tokenizer,
)
from keras_pretrain.evaluation import EvaluationConfig, FewLabelSplits, FewLabelTask, LabelPool, Split
from keras_pretrain.models import TextClassifier
from keras_pretrain.objectives import MaskedLanguageModel
from keras_pretrain.pipelines.base import ExportConfig, Pipeline, PipelineData, PretrainConfig, counted, dtype_policy
from keras_pretrain.throughput import Throughput


@dataclasses.dataclass
class TextDataConfig:
    """Where the text comes from, and how it is cut into pre-training sequences.

    `labelled`: a `.csv`/`.tsv`/`.jsonl` file with `text_column` and
    `label_column`, a folder with one subfolder of text files per class,
    `tfds:NAME[:SPLIT]`, or `wordnet_nouns`. `unlabeled`: text for
    pre-training: `.txt` files, directories, globs, `.jsonl`/`.csv`/`.tsv`
    (their `text_column`), `tfds:NAME[:SPLIT]`, or `wordnet`; plain text
    files give one document per line, per paragraph or per file
    (`document`). `test`: a labelled test set; without it a stratified test
    split is held out of `labelled`. Validation and test texts are never
    pre-trained on.

    `batching`: `"bucketed"` keeps one document per sequence and batches
    documents of similar length (short, unrelated documents: definitions,
    titles, tickets); `"packed"` concatenates documents into full sequences
    (long text: books, articles). `batch_by` (bucketed batching):
    `"sequences"` puts `pretrain.batch_size` documents in every batch,
    `"tokens"` gives every batch the token slots of `pretrain.batch_size`
    full-length sequences, so batches of short documents hold more of them.

    Example:
    >>> TextDataConfig(labelled="reviews.csv", text_column="body", unlabeled=["books/"], batching="packed")
    """

    labelled: str = ""
    unlabeled: list[str] = dataclasses.field(default_factory=list)
    test: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    document: str = "lines"
    data_dir: str | None = None  # where wordnet and TFDS data sets are looked for
    download: bool = True  # let TFDS download a data set it does not have
    pretrain_on_labelled: bool = True  # the labelled texts (minus held-out ones) are pre-training data too
    max_pretrain_documents: int | None = None  # the first N pre-training documents only (smoke runs)
    batching: str = "bucketed"
    bucket_widths: list[int] | None = None  # default: multiples of 16 up to the sequence length
    shuffle_buffer: int = 100000
    cache: bool = True  # keep tokenized documents in memory after the first pass (bucketed batching)
    batch_by: str = "sequences"

    def __post_init__(self):
        check(self.batching in ("bucketed", "packed"), f"data.batching must be 'bucketed' or 'packed'; got {self.batching!r}.")
        check(self.batch_by in BATCH_BY, f"data.batch_by must be {' or '.join(map(repr, BATCH_BY))}; got {self.batch_by!r}.")
        check(self.document in ("lines", "paragraphs", "files"),
              f"data.document must be 'lines', 'paragraphs' or 'files'; got {self.document!r}.")


@dataclasses.dataclass
class TokenizerConfig:
    """The WordPiece vocabulary trained on the pre-training text (cached on disk).

    Example:
    >>> TextPipelineConfig(tokenizer=TokenizerConfig(vocabulary_size=16000, sample_every=4))
    """

    vocabulary_size: int = 8000
    sample_every: int = 1  # learn it from every N-th document (the learner is slow)
    lowercase: bool = True


@dataclasses.dataclass
class BertConfig:
    """keras-hub `BertBackbone` size; dropout differs between pre-training and fine-tuning.

    `preset`: a keras-hub preset (a directory saved by `save_to_preset`, as every
    text run writes, or a published name such as `bert_tiny_en_uncased` when
    online) to continue pre-training from: its backbone and tokenizer replace the
    size fields and the vocabulary training.

    Example:
    >>> BertConfig(num_layers=4, num_heads=4, hidden_dim=256, intermediate_dim=1024, sequence_length=256)
    >>> BertConfig(preset="runs/bert_wordnet/preset")  # continue from an earlier run's backbone and tokenizer
    """

    preset: str | None = None
    num_layers: int = 2
    num_heads: int = 2
    hidden_dim: int = 128
    intermediate_dim: int = 512
    sequence_length: int = 128
    pretrain_dropout: float = 0.0
    finetune_dropout: float = 0.1

    def __post_init__(self):
        check_sizes(self, "backbone", ("num_layers", "num_heads", "hidden_dim", "intermediate_dim"))
        check_divisible(self, "backbone", "hidden_dim", "num_heads")
        if self.preset and "://" not in self.preset and not Path(self.preset).is_dir():  # a published name
            published = keras_hub.models.BertBackbone.presets
            hint = suggest(self.preset, published) or f" ({', '.join(sorted(published)[:4])}, ...)."
            check(self.preset in published,
                  f"backbone.preset {self.preset!r} is neither a directory nor a keras-hub BERT preset{hint}")
        check(self.sequence_length >= MIN_SEQUENCE_LENGTH,
              f"backbone.sequence_length {self.sequence_length} is too small: [CLS], [SEP] and the text need at least "
              f"{MIN_SEQUENCE_LENGTH}; set backbone.sequence_length={MIN_SEQUENCE_LENGTH} or more.")


@dataclasses.dataclass
class MlmConfig:
    """`MaskedLanguageModel` options.

    Example:
    >>> TextPipelineConfig(mlm=MlmConfig(mask_rate=0.2, whole_word_masking=True))
    """

    mask_rate: float = 0.15
    whole_word_masking: bool = False

    def __post_init__(self):
        check_fraction(self.mask_rate, "mlm.mask_rate")


@dataclasses.dataclass
class TextPipelineConfig:
    """Everything a text pipeline run needs; `keras-pretrain show NAME` prints it, `--set KEY=VALUE` changes it.

    Example:
    >>> config = TextPipelineConfig(name="tickets", data=TextDataConfig(labelled="tickets.csv"))
    >>> config = apply_overrides(config, ["backbone.num_layers=4", "pretrain.steps=2000"])
    """

    name: str = "bert_text"
    data: TextDataConfig = dataclasses.field(default_factory=TextDataConfig)
    tokenizer: TokenizerConfig = dataclasses.field(default_factory=TokenizerConfig)
    backbone: BertConfig = dataclasses.field(default_factory=BertConfig)
    objective: str = "mlm"  # the one text objective today
    mlm: MlmConfig = dataclasses.field(default_factory=MlmConfig)
    pretrain: PretrainConfig = dataclasses.field(
        # Ten minutes of updates, whatever the data size (about 3.5 passes over the WordNet glosses on 2 cores).
        default_factory=lambda: PretrainConfig(budget_minutes=10, batch_size=64, learning_rate=2e-3, weight_decay=0.01,
                                               beta_2=0.999)
    )
    evaluation: EvaluationConfig = dataclasses.field(default_factory=lambda: text_evaluation())
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)
    output_dir: str | None = None  # default runs/NAME
    seed: int = 0
    smoke_run: bool = False  # set by --quick (apply_quick)
    # What --quick changes besides one pre-training epoch and one grid point each.
    quick: dict = dataclasses.field(default_factory=lambda: {
        "data.max_pretrain_documents": 4000,
        "tokenizer.vocabulary_size": 2000,
        "evaluation.val_per_class": 10,
        "evaluation.max_test_per_class": 30,
        "evaluation.max_test": 300,
        "evaluation.finetune_epochs": 10,
    })

    def __post_init__(self):
        check(self.seed >= 0, f"seed must be a non-negative integer; got {self.seed}.")
        check(self.objective == "mlm", f"objective must be 'mlm' for text; got {self.objective!r}.")


def from_preset(cls, preset, **kwargs):
    """`cls.from_preset(preset)`, or one line saying why a published preset (downloaded on first use) did not load.

    Example:
    >>> tokenizer = from_preset(keras_hub.models.BertTokenizer, "bert_tiny_en_uncased")
    """
    try:
        return cls.from_preset(preset, **kwargs)
    except Exception as error:  # network errors from Kaggle or Hugging Face, a damaged download...
        if Path(preset).is_dir():
            raise
        reason = " ".join(str(error).split())[:200]
        raise RuntimeError(f"The keras-hub preset {preset!r} could not be loaded ({type(error).__name__}: {reason}): "
                           "a published preset downloads on first use, so run once with network access, or pass a "
                           "preset directory (backbone.preset=runs/NAME/preset).") from None


def text_evaluation(**changes):
    """The text pipeline's default `EvaluationConfig`, with `changes`.

    Fine-tuning a small BERT on few labels: 30 epochs, batches of 16, learning
    rates 2e-3 and 1e-3 with layer decay 0.8 (from scratch 3e-3 and 1e-3),
    weight decay 0.01; the baseline's and the probe's `C` on coarser grids.

    Example:
    >>> TextPipelineConfig(evaluation=text_evaluation(labels_per_class=5, val_per_class=50))
    """
    defaults = dict(
        labels_per_class=20, val_per_class=20, finetune_epochs=30, finetune_batch_size=16, finetune_weight_decay=0.01,
        finetune_grid=[(2e-3, 0.8), (1e-3, 0.8)], scratch_grid=[(3e-3, None), (1e-3, None)],
        probe_regularizations=[0.1, 1.0, 10.0], baseline_regularizations=[1.0, 10.0, 100.0],
    )
    return EvaluationConfig(**{**defaults, **changes})


class TextTask(FewLabelTask):
    """Few-label text classification with `TextClassifier` on a keras-hub backbone; the baseline is TF-IDF.

    The TF-IDF vocabulary is fitted on `corpus` (the unlabeled pre-training
    text: fitting needs no labels, and more text makes the baseline stronger).
    """

    baseline_name = "TF-IDF words"
    mixable = False  # token ids do not blend

    def __init__(self, corpus, new_backbone, tokenizer, sequence_length, class_names, dropout):
        self.corpus = corpus
        self.new_backbone = new_backbone
        self.dropout = dropout
        self.class_names = list(class_names)
        self.preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=sequence_length)
        self.vectorizer = None

    def fit_baseline_features(self, train_inputs):
        self.vectorizer = fit_tfidf(self.corpus)

    def baseline_features(self, inputs):
        return self.vectorizer.transform(inputs)

    def classifier_inputs(self, texts):
        return {key: keras.ops.convert_to_numpy(value) for key, value in self.preprocessor(texts).items()}

    def new_classifier(self, backbone=None, head=None):
        if backbone is None:
            backbone = self.new_backbone(self.dropout)
        else:  # a copy with fine-tuning dropout
            weights = backbone.get_weights()
            backbone = backbone.__class__.from_config({**backbone.get_config(), "dropout": self.dropout})
            backbone.set_weights(weights)
        classifier = TextClassifier(backbone, len(self.class_names), class_names=self.class_names,
                                    preprocessor=self.preprocessor, head=head)
        classifier.build(None)
        return classifier


@dataclasses.dataclass
class PretrainingText:
    """Pre-training text: several corpora read as one, without the evaluation texts; and its tokenizer."""

    parts: list  # TextCorpus objects
    exclude: list  # validation and test texts, never pre-trained on
    limit: int | None = None  # the first documents only
    tokenizer: object = None

    def corpus(self, shard=(0, 1)):
        """One streaming `TextCorpus`; `shard=(index, count)` is a process's share (see `TextCorpus.shard`).

        `limit` then caps each share at `limit // count` documents.
        """
        excluded = set(self.exclude)
        index, count = shard
        parts = [part.shard(index, count) for part in self.parts]
        limit = None if self.limit is None else self.limit // count

        def documents():
            kept = (text for text in itertools.chain.from_iterable(parts) if text not in excluded)
            return itertools.islice(kept, limit)

        return TextCorpus.from_texts(documents, name=", ".join(part.description for part in parts))


class TextPipeline(Pipeline):
    """Masked language model pre-training on any text sources; see `TextPipelineConfig`.

    Example:
    >>> config = load_recipe("bert_text", ["data.labelled=tickets.csv", "data.unlabeled=['books/']"])
    >>> results = TextPipeline(config, verbose=0).run()
    """

    def load_data(self, tokenizer=None):
        """Read the labelled sources, draw the splits, assemble the pre-training corpus, learn its vocabulary
        (unless a `tokenizer` is given); nothing is written but the vocabulary cache."""
        config = self.config.data
        if not config.labelled:
            raise ValueError("No labelled text: pass --data FILE (a CSV with text and label columns) or set data.labelled.")
        open_labelled = lambda spec: labelled_text_source(  # noqa: E731
            spec, text_column=config.text_column, label_column=config.label_column,
            data_dir=config.data_dir, download=config.download,
        )
        labelled = open_labelled(config.labelled)
        test = open_labelled(config.test) if config.test else None
        unlabeled = [
            text_corpus(spec, mode=config.document, text_column=config.text_column, data_dir=config.data_dir,
                        download=config.download)
            for spec in config.unlabeled
        ]
        labels = labelled.labels()
        test_labels = None if test is None else self.test_labels(labelled, test)
        indices = split_labelled(labels, labelled.class_names, self.config.evaluation, self.config.seed, test_labels)
        split = lambda source, idx, source_labels: Split(source.texts(idx), source_labels[idx])  # noqa: E731
        train, val = split(labelled, indices.train, labels), split(labelled, indices.val, labels)
        test_split = split(labelled, indices.test, labels) if test is None else split(test, indices.test, test_labels)

        parts = [labelled.corpus(exclude=indices.held_out)] if config.pretrain_on_labelled else []
        parts += unlabeled
        if not parts:
            raise ValueError("No pre-training text: set data.pretrain_on_labelled=True or pass --unlabeled.")
        evaluation_texts = [*val.inputs, *test_split.inputs]
        description = {
            "labelled": labelled.description,
            "test": test.description if test else "held out of the labelled texts (stratified)",
            "test_carved": bool(indices.test_carved),
            "unlabeled": [corpus.description for corpus in unlabeled],
            "train": len(indices.train), "val": len(indices.val), "test_size": len(indices.test),
        }
        pretraining = PretrainingText(parts, evaluation_texts, config.max_pretrain_documents)
        pretraining.tokenizer = tokenizer or self.tokenizer(pretraining.corpus())
        pool_indices = np.setdiff1d(np.arange(len(labelled)), np.union1d(indices.held_out, indices.val))
        pool = LabelPool(labels[pool_indices], lambda idx: labelled.texts(pool_indices[np.asarray(idx)]))
        splits = FewLabelSplits(train, val, test_split, labelled.class_names, pool)
        return PipelineData(splits, pretraining, description)

    @staticmethod
    def test_labels(labelled, test):
        """The test set's labels as indices into the labelled set's class names (matched by name)."""
        unknown = sorted(set(test.class_names) - set(labelled.class_names))
        if unknown:
            raise ValueError(f"The test set has labels the labelled data lacks: {unknown}; the label values must match.")
        position = np.array([labelled.class_names.index(name) for name in test.class_names])
        return position[test.labels()]

    def tokenizer(self, corpus):
        """A `keras_hub.models.BertTokenizer` whose WordPiece vocabulary is learned from `corpus` (cached on disk),
        or the preset's tokenizer when pre-training continues from one."""
        if self.config.backbone.preset:
            return from_preset(keras_hub.models.BertTokenizer, self.config.backbone.preset)
        config = self.config.tokenizer
        every = config.sample_every
        sample = corpus if every == 1 else TextCorpus.from_texts(
            lambda: itertools.islice(corpus, 0, None, every), name=f"every {every}th document of {corpus.description}"
        )
        return train_word_piece_tokenizer(sample, config.vocabulary_size, lowercase=config.lowercase)

    def sequences(self, corpus, tokenizer, batch_size, bucket_widths=None, drop_remainder=True):
        """`(dataset, batches, non-padding tokens, sequences)` per pass: `corpus` as MLM batches.

        One counting pass fixes the learning-rate schedule's length and fills
        the cache of tokenized documents, so epochs do not tokenize again.
        """
        config = self.config.data
        options = dict(sequence_length=self.config.backbone.sequence_length, batch_size=batch_size,
                       shuffle_buffer=config.shuffle_buffer, seed=self.config.seed, drop_remainder=drop_remainder)
        if config.batching == "packed" and bucket_widths is None:
            dataset = packed_dataset(corpus, tokenizer, **options)
        else:
            replicas_per_process = max(1, self.distribution.num_replicas // self.distribution.input_shard[1])
            dataset = bucketed_dataset(corpus, tokenizer, bucket_widths=bucket_widths or config.bucket_widths,
                                       cache=config.cache, batch_by=config.batch_by,
                                       batch_multiple=replicas_per_process, **options)
        count = lambda totals, batch: (totals[0] + 1, totals[1] + tf.reduce_sum(batch["padding_mask"]),  # noqa: E731
                                       totals[2] + tf.shape(batch["padding_mask"])[0])
        batches, tokens, sequences = dataset.reduce((0, tf.constant(0, tf.int32), tf.constant(0, tf.int32)), count)
        return dataset, int(batches), int(tokens), int(sequences)

    def new_backbone(self, vocabulary_size, dropout):
        """A fresh `BertBackbone` of the configured size, or the preset's (pre-trained) one."""
        config = self.config.backbone
        if config.preset:
            backbone = from_preset(keras_hub.models.BertBackbone, config.preset, dropout=dropout)
            if backbone.max_sequence_length < config.sequence_length:
                raise ValueError(f"The preset {config.preset} takes at most {backbone.max_sequence_length} tokens: "
                                 f"set backbone.sequence_length to that or less.")
            return backbone
        return keras_hub.models.BertBackbone(
            vocabulary_size=vocabulary_size, num_layers=config.num_layers, num_heads=config.num_heads,
            hidden_dim=config.hidden_dim, intermediate_dim=config.intermediate_dim,
            max_sequence_length=config.sequence_length, dropout=dropout,
        )

    def pretrain_model(self, tokenizer, total_steps):
        """A compiled `MaskedLanguageModel` on a fresh backbone, its schedule `total_steps` long."""
        keras.utils.set_random_seed(self.config.seed)
        with dtype_policy(self.config.pretrain.dtype_policy):
            backbone = self.new_backbone(tokenizer.vocabulary_size(), self.config.backbone.pretrain_dropout)
            mlm = MaskedLanguageModel.from_vocabulary(
                backbone, tokenizer.get_vocabulary(), seed=self.config.seed, **dataclasses.asdict(self.config.mlm)
            )
            length = self.config.backbone.sequence_length
            mlm.build({"token_ids": (None, length), "padding_mask": (None, length)})
        mlm.compile(optimizer=self.config.pretrain.optimizer(mlm, total_steps))
        return mlm

    def pretrain(self, data):
        tokenizer = data.pretraining.tokenizer
        batch_size = self.distribution.local_batch_size(self.config.pretrain.batch_size)
        corpus = data.pretraining.corpus(shard=self.distribution.input_shard)
        new_dataset = lambda: self.new_dataset(lambda: self.sequences(corpus, tokenizer, batch_size)[0])  # noqa: E731
        keras.utils.set_random_seed(self.config.seed)
        dataset, batches, tokens, sequences = self.sequences(corpus, tokenizer, batch_size)
        steps_per_pass = self.distribution.agree_min(batches)
        if steps_per_pass < 1:
            raise ValueError(
                f"The pre-training text makes no batch of {self.config.pretrain.batch_size} sequences: "
                "lower pretrain.batch_size (--set pretrain.batch_size=N) or add text."
            )
        new_model = lambda total: self.pretrain_model(tokenizer, total)  # noqa: E731
        epochs, steps, why = self.schedule(steps_per_pass, new_model, new_dataset)
        splits = data.splits
        by_tokens = self.config.data.batching == "bucketed" and self.config.data.batch_by == "tokens"
        batch = self.config.pretrain.batch_size
        batch = f"{batch * self.config.backbone.sequence_length} token slots" if by_tokens else f"{batch} sequences"
        self.log(
            f"{self.config.name} on {keras.backend.backend()}: pre-training on {steps_per_pass} batches of "
            f"{batch} per pass ({f'{sequences} sequences, ' if by_tokens else ''}{tokens} tokens"
            f"{' in this process' if self.distribution.input_shard[1] > 1 else ''}, vocabulary "
            f"{tokenizer.vocabulary_size()}), {len(splits.train)} labels for fine-tuning, {len(splits.val)} for "
            f"validation, {len(splits.test)} test texts"
            + (" (held out of the labelled texts, stratified; not pre-trained on)" if data.description["test_carved"] else "")
        )
        self.log(f"Choices: {counted(epochs * steps, 'step')} = {counted(epochs, 'epoch')} of {counted(steps, 'step')} "
                 f"({why}); mask rate "
                 f"{self.config.mlm.mask_rate:g}; {self.config.data.batching} batches")
        with self.distribution.scope():
            mlm = self.pretrain_model(tokenizer, epochs * steps)
            # One log line per epoch: a per-step progress bar makes JAX wait for every step to finish.
            # Tokens: the non-padding tokens of an average batch, and the FLOPs of an average sequence's tokens.
            tokens_per_step = tokens / batches * self.distribution.input_shard[1]
            length = tokens / sequences
            throughput = Throughput(tokens_per_step, mlm.flops_per_sample(round(length)) / length,
                                    self.config.pretrain.peak_flops, unit="tokens")
            history, seconds, trained = self.fit_pretraining(mlm, dataset, new_dataset, epochs, steps,
                                                             2 * self.verbose, throughput)
        if not self.distribution.is_chief:
            return mlm.backbone, {}
        # One width, every held-out text: evaluation compiles twice at most (padding changes no prediction).
        held_out = TextCorpus.from_texts(data.pretraining.exclude, name="validation and test texts")
        length = self.config.backbone.sequence_length
        evaluation_data, evaluation_steps, _, _ = self.sequences(held_out, tokenizer, batch_size, [length], False)
        evaluation = mlm.evaluate(evaluation_data, steps=evaluation_steps, verbose=0, return_dict=True)
        masked_token_accuracy = float(evaluation["masked_token_accuracy"])
        perplexity = float(np.exp(evaluation["loss"]))  # of the masked tokens, given the rest
        self.log(f"Masked-token accuracy on the held-out texts: {100 * masked_token_accuracy:.2f}%, "
                 f"perplexity {perplexity:.1f}")
        preset_dir = self.output_dir / "preset"
        mlm.backbone.save_to_preset(str(preset_dir))
        tokenizer.save_to_preset(str(preset_dir))
        self.log(f"Saved the pre-trained backbone and tokenizer as a keras-hub preset in {preset_dir}")
        plots.plot_loss_curve(history["loss"], self.output_dir / "pretrain_loss.png", title="Masked language modeling loss")
        return mlm.backbone, {
            "masked_token_accuracy": masked_token_accuracy,
            "masked_token_perplexity": perplexity,
            "pretrain_epochs": epochs,
            "pretrain_steps": epochs * steps,
            "pretrain_final_loss": history["loss"][-1],
            "pretrain_seconds": seconds,
            # The steps trained in `seconds` (a resumed run's own), at a pass's average tokens a step.
            "pretrain_tokens_per_second": trained * tokens_per_step / seconds,
            "pretrain_mfu": trained * tokens_per_step / seconds * throughput.flops_per_sample / throughput.peak_flops,
            "peak_flops": throughput.peak_flops,
            "vocabulary_size": tokenizer.vocabulary_size(),
            "preset_path": str(preset_dir),
        }

    def load_pretrained(self, data, finished):
        """The backbone an earlier run pre-trained, from its preset directory (in this output, wherever it moved)."""
        path = self.output_dir / Path(finished["preset_path"]).name
        self.log(f"Pre-training finished in an earlier run: loading its backbone from {path}")
        return keras_hub.models.Backbone.from_preset(str(path))

    def task(self, data):
        tokenizer = data.pretraining.tokenizer
        return TextTask(
            data.pretraining.corpus(),
            lambda dropout: self.new_backbone(tokenizer.vocabulary_size(), dropout),
            tokenizer, self.config.backbone.sequence_length, data.splits.class_names,
            self.config.backbone.finetune_dropout,
        )

    def export_samples(self, data):
        return data.splits.test.inputs[:200]

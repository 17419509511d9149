"""Masked language modeling on WordNet glosses, then few-label noun-category classification vs scratch and bag-of-words.

A small BERT is pre-trained on the glosses of all 117,659 WordNet synsets
except the evaluation split, one gloss per sequence, the corpus shuffled
(WordNet's files are sorted by lexicographer file, the very label). Then 8
noun categories are learned from 20 labelled glosses each; validation (50 per
class) and test (300 per class) are a fixed split. Measurements behind each
setting: recipes/README.md.
"""

from keras_pretrain.pipelines import (
    BertConfig,
    MlmConfig,
    PretrainConfig,
    TextDataConfig,
    TextPipelineConfig,
    TokenizerConfig,
    text_evaluation,
)

recipe = TextPipelineConfig(
    name="bert_wordnet",
    data=TextDataConfig(
        labelled="wordnet_nouns",  # artifact, person, plant, animal, act, communication, location, food
        unlabeled=["wordnet"],  # every gloss: nouns, verbs, adjectives, adverbs
        pretrain_on_labelled=False,  # the labelled glosses are part of "wordnet" already
        # With [CLS] and [SEP] a gloss is 21 tokens at the median, 42 at the 90th percentile.
        bucket_widths=[16, 24, 32, 40, 48, 64],
        shuffle_buffer=120000,  # all the glosses: the files are ordered by category
    ),
    # An upper bound: on every 8th gloss the learner stops at about 3,600 tokens.
    tokenizer=TokenizerConfig(vocabulary_size=6000, sample_every=8),
    backbone=BertConfig(num_layers=2, num_heads=2, hidden_dim=128, intermediate_dim=384, sequence_length=64),
    mlm=MlmConfig(mask_rate=0.4),
    # Five passes (about 10 minutes on 2 cores) instead of two: fine-tuned 63.3% on validation against 55.0%.
    pretrain=PretrainConfig(epochs=5, batch_size=64, learning_rate=2e-3, weight_decay=0.01, beta_2=0.999),
    evaluation=text_evaluation(labels_per_class=20, val_per_class=50, test_per_class=300),
    quick={
        "data.max_pretrain_documents": 4000,
        "tokenizer.vocabulary_size": 2000,
        "evaluation.val_per_class": 10,
        "evaluation.test_per_class": 30,
        "evaluation.finetune_epochs": 10,
    },
)

"""BERT-style MLM on IMDB reviews from TensorFlow Datasets (downloaded on first use), 20 labels per class.

Pre-trains on the 50,000 unlabeled reviews and the 25,000 training reviews,
packed into full sequences; classifies sentiment from the first 128 tokens.

    keras-pretrain run bert_imdb [--set data.data_dir=~/tensorflow_datasets]
"""

from keras_pretrain.pipelines import (
    BertConfig,
    MlmConfig,
    TextDataConfig,
    TextPipelineConfig,
    TokenizerConfig,
    text_evaluation,
)

recipe = TextPipelineConfig(
    name="bert_imdb",
    data=TextDataConfig(
        labelled="tfds:imdb_reviews:train", test="tfds:imdb_reviews:test",
        unlabeled=["tfds:imdb_reviews:unsupervised"], batching="packed",
    ),
    tokenizer=TokenizerConfig(vocabulary_size=8000, sample_every=10),
    backbone=BertConfig(num_layers=2, num_heads=2, hidden_dim=128, intermediate_dim=384, sequence_length=128),
    mlm=MlmConfig(mask_rate=0.4),
    evaluation=text_evaluation(labels_per_class=20, val_per_class=100),
)

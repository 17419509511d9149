"""BERT-style MLM on your own text: a labelled CSV/TSV/JSONL (--data), plus any unlabeled text (--unlabeled).

The labelled file's texts (except a held-out test split, unless --test is
given) and every --unlabeled file are pre-training data; then a classifier is
fine-tuned on --labels-per-class labels per class and compared with TF-IDF
logistic regression and with the same network from scratch.

    keras-pretrain run bert_text --data labelled.csv [--test test.csv] [--unlabeled books/ notes.txt]
                                 [--text-column text] [--label-column label]
"""

from keras_pretrain.pipelines import BertConfig, MlmConfig, TextPipelineConfig

recipe = TextPipelineConfig(
    name="bert_text",
    backbone=BertConfig(num_layers=2, num_heads=2, hidden_dim=128, intermediate_dim=384, sequence_length=128),
    mlm=MlmConfig(mask_rate=0.4),  # what worked on WordNet glosses (recipes/README.md)
)

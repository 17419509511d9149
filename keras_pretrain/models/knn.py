"""A k-nearest-neighbour classifier head: labelled embeddings kept as weights, temperature-weighted cosine votes."""

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="keras_pretrain")
class KnnHead(keras.layers.Layer):
    """Classifies embeddings by the votes of their `k` nearest labelled embeddings (cosine similarity).

    Each neighbour votes for its class with weight `exp(similarity /
    temperature)` (as in the kNN evaluation of Wu et al. 2018 and DINO); the
    output is the log of the normalised votes, so a softmax over it gives the
    vote shares and the head drops in wherever a Dense head's logits go (it
    is not trained). `bank` and `labels` are the labelled embeddings and
    their classes, kept as non-trainable weights so that saving and exporting
    carry them.

    Example:
    >>> head = KnnHead(train_embeddings, train_labels, num_classes=10, k=20)
    >>> classifier = ImageClassifier(encoder, num_classes=10, head=head)   # a kNN classifier that exports
    """

    def __init__(self, bank=None, labels=None, num_classes=None, k=20, temperature=0.07, bank_shape=None, **kwargs):
        super().__init__(**kwargs)
        if bank is not None:
            bank = np.asarray(bank, "float32")
            bank = bank / np.maximum(np.linalg.norm(bank, axis=1, keepdims=True), 1e-12)
            bank_shape = bank.shape
        self.num_classes = int(num_classes)
        self.k = int(min(k, bank_shape[0]))
        self.temperature = float(temperature)
        self.bank_shape = tuple(bank_shape)
        self.bank = self.add_weight(name="bank", shape=self.bank_shape, trainable=False,
                                    initializer=_constant(bank) if bank is not None else "zeros")
        one_hot = None if labels is None else np.eye(self.num_classes, dtype="float32")[np.asarray(labels, int)]
        self.bank_labels = self.add_weight(name="bank_labels", shape=(self.bank_shape[0], self.num_classes),
                                           trainable=False,
                                           initializer=_constant(one_hot) if one_hot is not None else "zeros")

    def call(self, embeddings):
        embeddings = ops.cast(embeddings, "float32")
        embeddings = embeddings / ops.maximum(ops.norm(embeddings, axis=-1, keepdims=True), 1e-12)
        similarity = ops.matmul(embeddings, ops.transpose(self.bank))
        top, indices = ops.top_k(similarity, k=self.k)
        weights = ops.exp((top - 1.0) / self.temperature)  # shifted by the largest possible similarity: no overflow
        votes = ops.sum(weights[..., None] * ops.take(self.bank_labels, indices, axis=0), axis=1)
        return ops.log(votes / ops.sum(votes, axis=-1, keepdims=True) + 1e-12)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "k": self.k,
                "temperature": self.temperature, "bank_shape": list(self.bank_shape)}


def _constant(value):
    return lambda shape, dtype=None: ops.convert_to_tensor(value, dtype=dtype)


def knn_probabilities(bank, labels, queries, num_classes, k=20, temperature=0.07):
    """Numpy kNN: vote shares `(len(queries), num_classes)`, as `KnnHead` computes them.

    Example:
    >>> accuracy = (knn_probabilities(train_x, train_y, test_x, 10).argmax(1) == test_y).mean()
    """
    normalize = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # noqa: E731
    similarity = normalize(np.asarray(queries, "float32")) @ normalize(np.asarray(bank, "float32")).T
    k = min(k, len(bank))
    nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    weights = np.exp((np.take_along_axis(similarity, nearest, axis=1) - 1.0) / temperature)
    votes = np.zeros((len(queries), num_classes))
    np.add.at(votes, (np.arange(len(queries))[:, None], np.asarray(labels)[nearest]), weights)
    return votes / votes.sum(1, keepdims=True)

"""Running a keras-hub text backbone from the inputs a preprocessor or an objective hands over."""

from keras import ops

from keras_pretrain.models.flat_projections import flat_projections


def sequence_output(backbone, token_ids, padding_mask, segment_ids=None, training=False):
    """Per-token features `(batch, length, hidden_dim)` of a keras-hub text backbone.

    Backbones that take `segment_ids` (BERT) get zeros when none are given,
    so that single-segment inputs need not carry them. The backbone runs in
    `flat_projections`, which makes its projections faster on TensorFlow and
    JAX.

    Example:
    >>> backbone = keras_hub.models.BertBackbone(vocabulary_size=1000, num_layers=2, num_heads=2,
    ...                                          hidden_dim=64, intermediate_dim=128)
    >>> sequence_output(backbone, token_ids, padding_mask).shape
    (2, 32, 64)
    """
    padding_mask = ops.cast(padding_mask, "int32")
    inputs = {"token_ids": ops.cast(token_ids, "int32"), "padding_mask": padding_mask}
    names = getattr(backbone, "input", None)
    if isinstance(names, dict) and "segment_ids" in names:
        inputs["segment_ids"] = ops.zeros_like(padding_mask) if segment_ids is None else ops.cast(segment_ids, "int32")
    with flat_projections():
        hidden = backbone(inputs, training=training)
    return hidden["sequence_output"] if isinstance(hidden, dict) else hidden

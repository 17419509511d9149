"""Model-parallel layouts for the transformer blocks of the package's models (JAX)."""

import keras

# Variable-path patterns of keras-hub's TransformerEncoder, as used by ViTEncoder,
# the MAE decoder and keras-hub's BertBackbone, and how each is split on the
# `model` axis: attention by heads, the MLP by its hidden units (Megatron style:
# column-parallel in, row-parallel out, so each block needs one reduction per half).
TRANSFORMER_LAYOUTS = {
    r".*self_attention_layer/(query|key|value)/kernel": (None, "model", None),
    r".*self_attention_layer/(query|key|value)/bias": ("model", None),
    r".*self_attention_layer/attention_output/kernel": ("model", None, None),
    r".*feedforward_intermediate_dense/kernel": (None, "model"),
    r".*feedforward_intermediate_dense/bias": ("model",),
    r".*feedforward_output_dense/kernel": ("model", None),
}


def transformer_layout_map(device_mesh):
    """A `keras.distribution.LayoutMap` sharding attention and MLP kernels on `"model"`.

    Every other variable (embeddings, norms, heads) is replicated. The number
    of attention heads and the MLP width of every block must divide by the
    size of the mesh's `model` axis.

    Example:
    >>> mesh = keras.distribution.DeviceMesh((4, 2), ["batch", "model"])
    >>> layout_map = transformer_layout_map(mesh)
    >>> distribution = keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch")
    """
    layout_map = keras.distribution.LayoutMap(device_mesh)
    for pattern, axes in TRANSFORMER_LAYOUTS.items():
        layout_map[pattern] = axes
    return layout_map

"""AdamW set up as MAE and BERT fine-tuning expect, from Keras's own parts."""

import keras


@keras.saving.register_keras_serializable(package="keras_pretrain")
class LayerDecayAdamW(keras.optimizers.AdamW):
    """AdamW whose learning rate is multiplied per variable by `lr_multipliers[variable.path]`.

    Keras optimizers have one learning rate; layer-wise decay needs one per
    layer. `update_step` is the one hook that every backend calls per variable,
    so scaling there works on TensorFlow, JAX and PyTorch alike. Weight decay
    keeps the unscaled rate.

    Example:
    >>> multipliers = {v.path: 0.75 for v in classifier.encoder.trainable_variables}  # the head keeps 1.0
    >>> optimizer = LayerDecayAdamW(lr_multipliers=multipliers, learning_rate=1e-3, weight_decay=0.05)
    """

    def __init__(self, lr_multipliers=None, **kwargs):
        super().__init__(**kwargs)
        self.lr_multipliers = dict(lr_multipliers or {})

    def build(self, var_list):
        super().build(var_list)
        # TensorFlow passes raw tf.Variables to update_step: index by position, not path.
        self._scales = [self.lr_multipliers.get(v.path, 1.0) for v in var_list]

    def get_config(self):
        return {**super().get_config(), "lr_multipliers": self.lr_multipliers}

    def update_step(self, gradient, variable, learning_rate):
        scale = self._scales[self._get_variable_index(variable)]
        super().update_step(gradient, variable, learning_rate * scale)


def make_adamw(
    model,
    learning_rate,
    total_steps,
    warmup_steps=None,
    weight_decay=0.05,
    layer_decay=None,
    beta_2=0.999,
    clipnorm=None,
    global_clipnorm=None,
    gradient_accumulation_steps=None,
):
    """AdamW with linear warmup then cosine decay, no weight decay on 1-D weights.

    Biases and norm scales (every weight of rank below 2) are excluded from
    weight decay. `global_clipnorm` clips the norm of all gradients together;
    `gradient_accumulation_steps=k` applies the average gradient of k steps
    once every k steps (Keras's own options). With `layer_decay` (MAE uses 0.65-0.75), a model that has a
    `layer_id(variable_path)` method gets learning rates scaled by
    `layer_decay ** (max_id - id)`, so early layers move least.
    The model must be built.

    Example:
    >>> optimizer = make_adamw(classifier, 1e-3, total_steps=1000, layer_decay=0.75)
    >>> classifier.compile(optimizer=optimizer, loss=..., metrics=["accuracy"])
    """
    if not model.built:
        raise ValueError("make_adamw needs a built model: call it on a batch or call model.build first.")
    if total_steps < 1:
        raise ValueError(f"total_steps must be at least 1; got {total_steps}.")
    warmup_steps = max(1, total_steps // 10) if warmup_steps is None else warmup_steps
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        warmup_target=learning_rate,
        warmup_steps=warmup_steps,
        decay_steps=max(1, total_steps - warmup_steps),
    )
    common = dict(learning_rate=schedule, weight_decay=weight_decay, beta_2=beta_2, clipnorm=clipnorm,
                  global_clipnorm=global_clipnorm, gradient_accumulation_steps=gradient_accumulation_steps)
    if layer_decay is None or layer_decay == 1.0:
        optimizer = keras.optimizers.AdamW(**common)
    else:
        if not 0.0 < layer_decay <= 1.0:
            raise ValueError(f"layer_decay must be in (0, 1]; got {layer_decay}.")
        ids = {v.path: model.layer_id(v.path) for v in model.trainable_variables}
        top = max(ids.values())
        optimizer = LayerDecayAdamW(
            lr_multipliers={path: layer_decay ** (top - i) for path, i in ids.items()}, **common
        )
    optimizer.exclude_from_weight_decay(var_list=[v for v in model.trainable_variables if len(v.shape) < 2])
    return optimizer

"""`TracesOnce`: TensorFlow traces a model's train step once, not twice."""

import keras


class TracesOnce:
    """Mixin for models: on single-device TensorFlow, create the optimizer's and metrics' state before tracing.

    Keras builds that state up front on JAX, on torch and under `tf.distribute`,
    but on single-device TensorFlow it creates it inside the first trace of the
    train step. A `tf.function` that creates variables is traced a second time,
    so a new model's first `fit` paid for two traces (about 3.5 s each for
    a one-block MAE on a 2-core machine, more for deeper models). Here Keras
    builds it from the data's `element_spec` instead, as it does under
    `tf.distribute`, without reading a batch (which would restart the input
    pipeline). The same variables with the same initial values: training is
    unchanged.

    Example:
    >>> class MyObjective(TracesOnce, keras.Model): ...
    >>> model.compile(optimizer="adamw"); model.fit(images)  # one trace of the train step
    """

    # Keras's own hook for this (private; tests/models/test_tracing.py fails if Keras stops calling it).
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if keras.backend.backend() != "tensorflow" or self._distribute_strategy is not None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        import tensorflow as tf

        if data_batch is None:  # fit and evaluate: the batches' specs, which `_symbolic_build` reads like tensors
            data_batch = iterator._distributed_dataset.element_spec  # the dataset itself outside `tf.distribute`
            if not all(isinstance(spec, tf.TensorSpec) and spec.shape.rank is not None
                       for spec in tf.nest.flatten(data_batch)):
                return None  # an input of unknown rank (or ragged): Keras's own way, state built while tracing
        return self._symbolic_build(data_batch=data_batch)

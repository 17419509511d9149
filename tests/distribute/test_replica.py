import keras
import numpy as np
import pytest
from keras import ops

from keras_pretrain.distribute import replica_uniform


@pytest.mark.parametrize("shape", [(4, 8), (16, 128, 2), (3, 5, 7)])
def test_noise_is_keras_uniform_from_the_same_seed_state(shape):
    # On TensorFlow it is drawn another way (so XLA keeps it): the numbers must still be Keras's.
    ours, keras_stream = keras.random.SeedGenerator(3), keras.random.SeedGenerator(3)
    for _ in range(2):
        np.testing.assert_array_equal(
            ops.convert_to_numpy(replica_uniform(shape, seed=ours)),
            ops.convert_to_numpy(keras.random.uniform(shape, seed=keras_stream)),
        )
    np.testing.assert_array_equal(ops.convert_to_numpy(ours.state), ops.convert_to_numpy(keras_stream.state))

"""tasks/captioning/model.py: the image encoders."""


import keras
import numpy as np
import pytest

from zoo import images
from zoo.errors import UserError


def test_backbone_encoder_loads_local_weights_and_is_frozen(tmp_path):
    network = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3),
                                             pooling="avg", alpha=0.35)
    path = str(tmp_path / "backbone.weights.h5")
    network.save_weights(path)
    with pytest.raises(UserError, match="no such file"):
        images.build_backbone_encoder("mobilenet_v2", 32, weights=str(tmp_path / "missing.h5"))
    encoder = images.build_backbone_encoder("mobilenet_v2", 32, weights=path, alpha=0.35)
    assert not encoder.trainable_weights
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(encoder(pixels), network(pixels / 127.5 - 1.0), rtol=1e-4, atol=1e-5)

"""RNN Zoo shared library: recurrent factory, data pipeline, training harness, metrics and decoding."""

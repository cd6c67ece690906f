"""Many-to-one text classification: the sentiment and spam tasks and the model, preprocessing and serving they share."""

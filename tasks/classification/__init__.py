"""Many-to-one text classification: the sentiment and spam tasks and the data, model, serving and metrics they share."""

"""The language-model family (`--task lm`): config, data, model, serving and metrics modules, and the task module."""

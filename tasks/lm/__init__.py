"""The language-model family (`--task lm`): data, model, serving and evaluation modules, and the task module."""

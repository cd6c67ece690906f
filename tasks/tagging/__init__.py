"""Sequence tagging, one tag per token: the POS and NER tasks and what they share (features, data, model, serving, metrics)."""

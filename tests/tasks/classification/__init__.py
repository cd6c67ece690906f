"""Tests of the text-classification family (tasks/classification/)."""

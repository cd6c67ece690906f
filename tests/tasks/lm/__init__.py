"""Tests of the language-model family (tasks/lm/), one module per source module."""

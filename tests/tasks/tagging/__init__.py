"""Tests of the tagging family (tasks/tagging/): one module per source module."""

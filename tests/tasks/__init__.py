"""Tests of the task families, one folder per family (tasks/<family>/)."""

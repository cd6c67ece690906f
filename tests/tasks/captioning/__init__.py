"""Tests of the image captioning family (tasks/captioning/)."""

"""Tests of the data-source layer (zoo/data/)."""

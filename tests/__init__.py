"""The test suite: tests of zoo/ and the benchmarks here, of the task families under tests/tasks/."""

"""The benchmarks: cells (task x cell x seed runs), speed (against plain Keras and PyTorch), synthetic long-range tasks, LM data memory; results/ holds their outputs."""

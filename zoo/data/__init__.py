"""The data layer: where data comes from (sources), how files are read (files, tables, columns), and the tf.data pipeline."""

"""Readers of click logs that Python reads first: columnar tables grouped into sessions.

- `long`: one row per impression in a pyarrow, pandas or polars table, or a Parquet, CSV or Feather
  file (`clickjax.formats.long.read_long`).
"""

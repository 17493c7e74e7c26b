"""Readers of click logs that Python reads first: columnar tables grouped into sessions.

- `long`: one row per impression in a pyarrow, pandas or polars table, or a Parquet, CSV or Feather
  file (`clickjax.formats.long.read_long`).
- `hf-baidu`: Baidu-ULTR as pre-processed for Hugging Face, Feather or Parquet with one row per
  document or per query (`clickjax.formats.hf_baidu.read_hf_baidu`).
"""

"""Utilities: data loading (``tinygrad_zh.utils.data``)."""

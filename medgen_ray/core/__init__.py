"""Shared by every job: stage protocol, batches, errors, video decode/encode, Parquet parts, storage, Ray start-up, metrics, charts."""

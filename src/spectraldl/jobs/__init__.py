"""Resumable jobs: shards, atomic commits, the errors file, process pools and Dask.

Also the ingest stage (many files -> one dataset), which runs on them.
"""

"""Dask backend for populations (issue 5): chunked, resumable runs across processes or machines."""

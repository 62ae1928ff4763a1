"""Benchmarks: ``python -m bench.run [--sections ...] [--quick]`` (``make bench``).

Each section measures one thing, prints its figures as they come and merges
them into ``bench/results.json`` (flat dotted keys, e.g. ``query.photo.p50_ms``);
``bench/results.md`` is rewritten from the whole file after every section.
"""

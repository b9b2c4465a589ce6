"""Tagging corpora: record readers and writers in blocks (io.py), and the same blocks on Ray Data
(ray_tag.py, only imported with `--ray`: Ray is an optional extra)."""

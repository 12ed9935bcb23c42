"""Data preparation: source trees -> filtered, deduplicated, tokenized, packed MindRecord shards.

collect.py  walk directories and archives, classify files by language, count every skip reason
filters.py  the original's quality filters, exact and near-duplicate removal
pack.py     packing/padding token streams into windows, MindRecord shard writing and reading
pipeline.py the resumable end-to-end run with its manifest (used by data_prep/prepare_corpus.py)
"""

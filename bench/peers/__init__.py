"""The contestants scm-batch is measured against; each runs as ``python -m bench.peers.NAME``."""

"""scm-batch: process very large JSON Lines files in parallel chunks, aggregate, deliver."""

"""`make bench`: scm-batch raced against the tools users would otherwise reach for (issue 7)."""

"""``python -m scm_batch`` runs the command line."""

from scm_batch.cli import main

main()

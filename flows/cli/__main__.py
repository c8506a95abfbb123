"""`python -m flows.cli`: the narrator command."""

from flows.cli import main

main()

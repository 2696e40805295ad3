"""`python -m stream ...` is the `eligibility` command."""

from stream.cli import main

main()

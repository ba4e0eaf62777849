"""`python -m ztgate` runs the command line."""

from ztgate.cli.main import main

main()

"""`python -m playstream.cli` runs the `playstream` command."""
from playstream.cli.main import main

main()

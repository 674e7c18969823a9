"""`python -m playstream` is the `playstream` command."""
from playstream.cli.main import main

main()

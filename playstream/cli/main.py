"""The `playstream` command."""
import click


@click.group()
def main() -> None:
    """playstream: self-play games to training data."""

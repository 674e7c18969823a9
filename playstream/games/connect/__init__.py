"""The built-in game: k in a row on four boards, 2 to 4 players."""

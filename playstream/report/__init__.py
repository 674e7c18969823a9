"""The dataset report: numbers (`stats`, pure numpy) and their figures (`render`, matplotlib,
imported only by the command that draws)."""

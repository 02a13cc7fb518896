"""The operations behind pct's commands (no argument parsing, no printing of results)."""

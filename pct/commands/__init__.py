"""pct's typer commands, one module per group; they parse, call pct.ops / shared, print."""

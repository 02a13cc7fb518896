"""ctkit's runtime library, shared by the pveam, vzdump and pct apps."""

"""vzdump's typer commands: they parse, call the engine or the job library, and print."""

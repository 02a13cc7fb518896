"""One module per pveam command group; each only parses, calls the library and prints."""

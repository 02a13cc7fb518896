"""Placeholder for `make demo` until the end-to-end demo lands."""

print("ctkit demo: set-up done. The demo will build a template, publish a signed catalog, "
      "create, back up and restore a container; it is not implemented yet.")

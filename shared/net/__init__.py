"""Host networking for containers: what LXC's own bridge attachment does not cover."""

"""Other ctkit hosts reached over SSH: the remotes config, the ssh transport, ownership records."""

"""pct: create and manage containers, Proxmox style."""

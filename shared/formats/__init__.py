"""Proxmox's text formats: value types, property strings and section configs."""

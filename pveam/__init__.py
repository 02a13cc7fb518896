"""``pveam``: Proxmox VE's appliance manager for any Debian LXC host (a typer app over
:mod:`index`)."""

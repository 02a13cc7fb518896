"""The live container: LXC config generation, python-lxc, cgroups, mounts, hooks."""

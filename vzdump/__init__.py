"""vzdump for LXC containers: options, schedules, notes and the backup engine."""

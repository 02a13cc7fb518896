"""Guest OS detection and per-distribution setup of container root file systems.

Use :meth:`shared.guest.setup.GuestSetup.for_rootfs`; every file operation runs chrooted into
the container. The package itself loads nothing: a command that needs one of its modules (the
chroot, the config's checks) gets that one, not every distribution's setup (about 10 ms), which
``pct create``, ``pct restore`` and ``pct clone`` load in a thread while they wait on tar or
cp (``shared.preload``).
"""

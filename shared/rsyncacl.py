"""What every rsync that copies ACLs and xattrs (``-A -X``) is also told: leave XFS's own
names for ACLs alone.

XFS shows root the ACLs it keeps as ``trusted.SGI_ACL_FILE`` and ``trusted.SGI_ACL_DEFAULT``
besides ``system.posix_acl_*``. ``-A`` copies the ACL, which gives a copy on XFS those names;
the source (ext4, btrfs) has no such xattrs, so the next pass's ``-X`` deleted them to match,
and the ACL with them. A suspend-mode backup always syncs twice: with its temp dir on XFS, every
ACL was gone from the archive, silently. The ACLs themselves still go with ``-A``.
"""

from __future__ import annotations

XFS_ACL_FILTER = "--filter=-x trusted.SGI_ACL_*"

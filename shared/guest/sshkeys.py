"""New SSH host keys for a created container, generated on the host with ``ssh-keygen``."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from shared.errors import CommandError

KEY_TYPES = ("rsa", "ecdsa", "ed25519")


def generate_host_keys(
    comment: str, log: Callable[[str], None]
) -> dict[str, tuple[str, int]] | None:
    """``{container path: (content, mode)}`` for every key type; ``None`` without ssh-keygen."""
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        return None
    import tempfile  # (with random: only where keys are made, not at every command's start)

    keys: dict[str, tuple[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="ctkit-sshkeys-") as tmp:
        for key_type in KEY_TYPES:
            name = f"ssh_host_{key_type}_key"
            log(f"Creating SSH host key '{name}' - this may take some time ...")
            path = Path(tmp) / name
            cmd = [keygen, "-q", "-f", str(path), "-t", key_type, "-N", "", "-C", comment]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise CommandError(f"ssh-keygen failed for '{name}': {proc.stderr.strip()}")
            fingerprint = subprocess.run(
                [keygen, "-l", "-E", "sha256", "-f", f"{path}.pub"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            if match := re.search(r"(SHA256:\S+)\s+" + re.escape(comment), fingerprint):
                log(f"done: {match.group(1)} {comment}")
            keys[f"/etc/ssh/{name}"] = (path.read_text(), 0o600)
            keys[f"/etc/ssh/{name}.pub"] = (Path(f"{path}.pub").read_text(), 0o644)
    return keys

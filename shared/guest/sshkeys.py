"""``ssh-keygen`` on the host for a created container: its new SSH host keys, and the check of
the public keys given for its root."""

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


KEY_CHECK_ERROR = "SSH public key validation error"


def check_public_keys(text: str) -> None:
    """Each line that is not blank must be a public key ``ssh-keygen -l`` reads, as Proxmox
    checks them: a private key given by mistake (``id_ed25519`` for ``id_ed25519.pub``) was
    written into the container's ``authorized_keys``, readable by its root."""
    lines = [(n, line) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
    if not lines:
        return
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        raise CommandError(f"{KEY_CHECK_ERROR} - ssh-keygen is not installed")
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ctkit-sshkeys-") as tmp:
        path = Path(tmp) / "key.pub"
        for number, line in lines:
            path.write_text(line + "\n")
            proc = subprocess.run([keygen, "-l", "-f", str(path)], capture_output=True, check=False)
            if proc.returncode != 0:
                raise CommandError(f"{KEY_CHECK_ERROR} - line {number} is not a public key")

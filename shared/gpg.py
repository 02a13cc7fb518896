"""OpenPGP keyrings through python-gnupg, each in its own GNUPGHOME (never ``~/.gnupg``).

A verification keyring runs gpg with ``--no-autostart``: importing, listing, deleting public
keys and checking signatures need no gpg-agent, so none is left running. A signing keyring
(``agent=True``, the publisher's own home) lets gpg start its agent, which is the publisher's.
Trust comes from pinning fingerprints, not from gpg's web of trust, hence
``--trust-model always``.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import pgpsig
from .atomic import atomic_open
from .errors import NotFoundError, VerifyError
from .regularfile import UnreadableFile, read_whole

if TYPE_CHECKING:
    import gnupg

FPR_RE = re.compile(r"[0-9A-F]{40}|[0-9A-F]{64}")
MAX_KEY_FILE = 4 << 20


class GpgError(VerifyError):
    """gpg refused an operation (bad key file, unknown key, signing failed)."""


def _fingerprint(value: str) -> str:
    try:
        return normalize_fingerprint(value)
    except ValueError as err:
        raise GpgError(str(err)) from None


def normalize_fingerprint(value: str) -> str:
    """Upper-case hex without spaces; raise ValueError unless it is a v4/v5 fingerprint."""
    fpr = re.sub(r"\s+", "", value).upper()
    if fpr.startswith("0X"):
        fpr = fpr[2:]
    if not FPR_RE.fullmatch(fpr):
        raise ValueError(f"invalid fingerprint '{value}' (expected 40 or 64 hex digits)")
    return fpr


@dataclass(frozen=True)
class KeyInfo:
    fingerprint: str
    uids: tuple[str, ...]
    created: int | None
    expires: int | None
    algorithm: str
    length: int | None
    subkeys: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "uids": list(self.uids),
            "created": self.created,
            "expires": self.expires,
            "algorithm": self.algorithm,
            "length": self.length,
            "subkeys": list(self.subkeys),
        }


@dataclass(frozen=True)
class Verification:
    """The outcome of a detached-signature check.

    ``valid`` needs gpg's exit code 0, no bad/erroneous signature and at least one good one.
    ``fingerprint`` is the signer's primary key, ``sig_timestamp`` the signature's creation
    time (seconds since the epoch). ``signers`` maps every good signer (primary and signing
    subkey fingerprints) to its signature time, for files with several signatures.
    """

    valid: bool
    fingerprint: str | None
    sig_timestamp: int | None
    status: str
    signers: tuple[tuple[str, str, int], ...] = ()
    messages: tuple[str, ...] = ()

    def __iter__(self) -> Any:
        return iter((self.valid, self.fingerprint, self.sig_timestamp))

    def signed_by(self, pinned: list[str] | tuple[str, ...]) -> tuple[str, int] | None:
        """(primary fingerprint, signature time) of a good signature by a pinned key."""
        wanted = {p.upper() for p in pinned}
        if not self.valid:
            return None
        for primary, signing, ts in self.signers:
            if primary in wanted or signing in wanted:
                return primary, ts
        return None


def _timestamp(raw: str | None) -> int | None:
    if not raw:
        return None
    if raw.isdigit():
        return int(raw)
    with contextlib.suppress(ValueError):
        return int(datetime.strptime(raw, "%Y%m%dT%H%M%S").replace(tzinfo=UTC).timestamp())
    return None


def _int_or_none(raw: Any) -> int | None:
    return int(raw) if isinstance(raw, str) and raw.isdigit() else None


def _ensure_trustdb(home: Path) -> None:
    """gpg never creates a trust database under ``--trust-model always``, yet it needs one
    to read an expired key: without it, a scan or import of such a key fails as if the file
    held no key at all. Another trust model creates it once."""
    if (home / "trustdb.gpg").exists():
        return
    import subprocess

    subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--no-autostart", "--check-trustdb"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )


# what gpg reports when its home cannot be written (a full or read-only /etc/pveam)
_WRITE_ERRORS = tuple(
    os.strerror(code) for code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EIO)
)


def _write_failure(stderr: str) -> str | None:
    """The system error in gpg's report of a failed import, if it names one."""
    return next((text for text in _WRITE_ERRORS if text in stderr), None)


class Keyring:
    """A keyring in ``home`` (created mode 0700); ``home=None`` means gpg's default home."""

    def __init__(self, home: Path | None, *, agent: bool = False) -> None:
        self.home = home
        self.agent = agent
        if home is not None:
            home.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(home, 0o700)
            _ensure_trustdb(home)
        options = ["--trust-model", "always"]
        if not agent:
            options.append("--no-autostart")
        # imported here: what only reads a key fingerprint (sources.cfg for every download)
        # does not load python-gnupg, 7.5 ms on the reference VM
        import gnupg

        self.gpg: gnupg.GPG = gnupg.GPG(gnupghome=str(home) if home else None, options=options)

    # --- keys -------------------------------------------------------------------------------

    def import_file(self, path: Path) -> list[str]:
        """Import the public key(s) of an armoured or binary file; return their fingerprints."""
        # read once, as a bounded regular file: gpg reading a FIFO waited for ever, one
        # reading /dev/zero ran without end (and outlived pveam)
        try:
            data = read_whole(path, MAX_KEY_FILE)
        except FileNotFoundError:
            raise NotFoundError(f"key file '{path}' does not exist") from None
        except UnreadableFile as err:
            raise GpgError(f"key file '{path}' {err.reason}") from None
        except OSError as err:
            raise GpgError(f"unable to read key file '{path}': {err.strerror}") from None
        scanned = self.gpg.scan_keys_mem(data)
        if any(k.get("type") == "sec" for k in scanned):
            raise GpgError(f"refusing '{path}': it contains a secret key")
        if not scanned:
            raise GpgError(f"no OpenPGP public key found in '{path}'")
        return self.import_data(data, str(path))

    def import_data(self, data: bytes, what: str = "key data") -> list[str]:
        result = self.gpg.import_keys(data)
        fprs = [r["fingerprint"] for r in result.results if r.get("fingerprint")]
        if not fprs:
            reason = _write_failure(str(result.stderr or ""))
            if reason is not None:  # the key was fine: the keyring could not take it
                where = self.home or "gpg's default home"
                raise GpgError(f"unable to store the key from '{what}' in '{where}': {reason}")
            raise GpgError(f"no OpenPGP public key could be imported from '{what}'")
        return list(dict.fromkeys(f.upper() for f in fprs))

    def list_keys(self) -> list[KeyInfo]:
        keys = []
        for k in self.gpg.list_keys():
            keys.append(
                KeyInfo(
                    fingerprint=k["fingerprint"].upper(),
                    uids=tuple(k.get("uids") or ()),
                    created=_int_or_none(k.get("date")),
                    expires=_int_or_none(k.get("expires")),
                    algorithm=str(k.get("algo", "")),
                    length=_int_or_none(k.get("length")),
                    subkeys=tuple(str(s[2]).upper() for s in k.get("subkeys") or () if len(s) > 2),
                )
            )
        return keys

    def find_key(self, fingerprint: str) -> KeyInfo | None:
        fpr = _fingerprint(fingerprint)
        for key in self.list_keys():
            if fpr == key.fingerprint or fpr in key.subkeys:
                return key
        return None

    def remove(self, fingerprint: str) -> None:
        fpr = _fingerprint(fingerprint)
        key = self.find_key(fpr)
        if key is None:
            raise NotFoundError(f"no key with fingerprint {fpr} in keyring")
        result = self.gpg.delete_keys(key.fingerprint)
        if str(result.status) != "ok":
            raise GpgError(f"unable to remove key {fpr}: {result.status}")

    # --- signatures ---------------------------------------------------------------------------

    def verify_detached(self, data_path: Path, sig_path: Path) -> Verification:
        """Check ``sig_path`` (armoured or binary) over ``data_path``; gpg streams the data.
        gpg only reads the signature once it is known to be signature packets and no more
        (:mod:`shared.pgpsig`)."""
        try:
            packets = pgpsig.detached_signature(read_whole(sig_path, pgpsig.MAX_FILE))
        except (OSError, UnreadableFile, pgpsig.SignatureFormatError) as err:
            why = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            return Verification(False, None, None, f"the signature file {why}")
        result = self.gpg.verify_file(io.BytesIO(packets), data_filename=str(data_path))
        messages = tuple(
            line[5:].strip()
            for line in (result.stderr or "").splitlines()
            if line.startswith("gpg: ")
        )
        signers = []
        for info in result.sig_info.values():
            if info.get("status") != "signature valid":
                continue
            signing = str(info.get("fingerprint") or "").upper()
            primary = str(info.get("pubkey_fingerprint") or signing).upper()
            signers.append((primary, signing, _timestamp(info.get("timestamp")) or 0))
        valid = bool(result.valid) and result.returncode == 0 and not result.problems
        valid = valid and bool(signers)
        status = str(result.status or "no signature found")
        if not valid and result.problems:
            problem = result.problems[-1]
            status = str(problem.get("status") or status)
            if problem.get("keyid"):
                status += f" (key {problem['keyid']})"
        first = signers[0] if signers else None
        return Verification(
            valid=valid,
            fingerprint=first[0] if first else None,
            sig_timestamp=first[2] if first else None,
            status=status,
            signers=tuple(signers),
            messages=messages,
        )

    def sign_detached(
        self,
        data_path: Path,
        sig_path: Path,
        key: str,
        *,
        armor: bool = True,
        extra_args: list[str] | None = None,
    ) -> None:
        """Write a detached signature of ``data_path`` by ``key`` to ``sig_path`` atomically."""
        fpr = _fingerprint(key)
        found = self.find_key(fpr)
        if found is None:
            raise GpgError(f"unable to sign '{data_path}': no key {fpr} in '{self.home}'")
        # python-gnupg passes --default-key, which silently falls back to another key;
        # --local-user makes gpg fail instead, and the signer is checked once more below.
        args = ["--local-user", fpr, *(extra_args or [])]
        with atomic_open(sig_path) as out:
            with open(data_path, "rb") as data:
                result = self.gpg.sign_file(
                    data, keyid=fpr, detach=True, clearsign=False, binary=not armor, extra_args=args
                )
            signer = str(result.fingerprint or "").upper()
            if not result.data or signer not in (found.fingerprint, *found.subkeys):
                detail = (result.stderr or "").strip().splitlines()
                reason = next((x for x in reversed(detail) if not x.startswith("[GNUPG:]")), "")
                raise GpgError(f"unable to sign '{data_path}' with key {fpr}: {reason}".rstrip())
            out.write(result.data)

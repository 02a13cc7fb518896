"""``index build`` and ``index verify``: publishing a signed template catalog of one directory.

``build`` scans the templates directly in the directory (file names
``<package>_<version>_<arch>.tar.*``), reads OS and version from each archive's os-release by
streaming it, hashes each file (sha512), and writes ``aplinfo.dat``, ``aplinfo.dat.gz`` and the
armoured detached ``aplinfo.dat.asc`` atomically. Locations are relative (the file name), so
the directory can be served from any base URL. ``verify`` checks a catalog as ``update`` and
``download`` would: signature by the named key, strict parse, the ``.gz`` copy, every hash.

One keyring rule for both: the GnuPG home given as ``gnupghome``, else gpg's own home
(``$GNUPGHOME``, else ``~/.gnupg``) - the keyring that holds the publisher's key. So ``verify``
works straight after ``build``. Clients use pveam's keyring instead; ``verify`` reports
whether the key is there (``pveam key add`` puts it there).
"""

from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from shared import atomic
from shared.errors import ArchiveError, ParamError, VerifyError
from shared.gpg import Keyring, normalize_fingerprint
from shared.http import CHUNK_SIZE, hash_file
from shared.storage.volid import TEMPLATE_EXT_RE

from . import keys as pveam_keys
from .aplinfo import (
    ABSOLUTE_URL_RE,
    VERSION_VALUE_RE,
    AplinfoError,
    Appliance,
    parse_aplinfo,
)
from .aplwriter import serialize_aplinfo
from .download import expected_checksum
from .osrelease import find_os_release, parse_os_release
from .sources import check_url

INDEX_NAME = "aplinfo.dat"
NAME_RE = re.compile(r"([^_\s/]+)_([^_\s/]+)_([^_\s/]+)")
TOKEN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


@dataclass
class BuildResult:
    index: Path
    gz: Path
    signature: Path
    fingerprint: str
    appliances: list[Appliance]


def _param(name: str, message: str) -> ParamError:
    return ParamError({name: message})


def _key(key: str) -> str:
    try:
        return normalize_fingerprint(key)
    except ValueError as err:
        raise _param("key", str(err)) from None


def scan_templates(directory: Path) -> list[Path]:
    """Regular, non-hidden files with a template extension, sorted by name."""
    if not directory.is_dir():
        raise _param("dir", f"'{directory}' is not a directory")
    return sorted(
        p
        for p in directory.iterdir()
        if not p.name.startswith(".") and TEMPLATE_EXT_RE.search(p.name) and p.is_file()
    )


def describe_template(
    path: Path, *, section: str, infopage: str, maintainer: str | None = None
) -> Appliance:
    """The index record of one template file (hash and os-release read by streaming)."""
    stem = TEMPLATE_EXT_RE.sub("", path.name)
    m = NAME_RE.fullmatch(stem)
    if not m or not VERSION_VALUE_RE.fullmatch(m.group(2)):
        raise ArchiveError(
            f"cannot derive package, version and architecture from '{path.name}' "
            "(expected <package>_<version>_<arch>.tar.*, the version starting with a digit)"
        )
    package, version, arch = m.groups()
    text = find_os_release(path)
    if text is None:
        raise ArchiveError(f"no etc/os-release in '{path}'")
    info = parse_os_release(text)
    os_id, os_version = info.get("ID", ""), info.get("VERSION_ID", "")
    if not TOKEN_RE.fullmatch(os_id) or (os_version and not TOKEN_RE.fullmatch(os_version)):
        raise ArchiveError(f"unusable ID/VERSION_ID in the os-release of '{path}'")
    os_name = f"{os_id}-{os_version}" if os_version else os_id
    fields = {"package": package, "version": version, "type": "lxc", "os": os_name}
    fields["section"] = section
    if maintainer:
        fields["maintainer"] = maintainer
    fields |= {"architecture": arch, "location": path.name}
    fields |= {"sha512sum": hash_file(path, "sha512"), "infopage": infopage}
    pretty = " ".join(info.get("PRETTY_NAME", "").split()) or os_name
    return Appliance(fields=fields, headline=f"{pretty} container template ({package})")


def build_catalog(
    directory: Path,
    *,
    base_url: str,
    key: str,
    section: str = "system",
    gnupghome: Path | None = None,
    maintainer: str | None = None,
    infopage: str | None = None,
    index_name: str = INDEX_NAME,
) -> BuildResult:
    """Write the signed catalog of ``directory``; ``gnupghome`` holds the secret ``key``
    (default: gpg's own home, i.e. ``$GNUPGHOME`` or ``~/.gnupg``)."""
    try:
        base_url = check_url(base_url)
    except ValueError as err:
        raise _param("url", str(err)) from None
    fpr = _key(key)
    if not TOKEN_RE.fullmatch(section):
        raise _param("section", f"invalid section name '{section}'")
    if maintainer is not None and ("\n" in maintainer or maintainer != maintainer.strip()):
        raise _param("maintainer", "invalid maintainer")
    page = infopage or f"{base_url}/"
    apps = [
        describe_template(p, section=section, infopage=page, maintainer=maintainer)
        for p in scan_templates(directory)
    ]
    text = serialize_aplinfo(apps)
    parse_aplinfo(text, base_url, strict=True)  # never publish what clients would reject
    index = directory / index_name
    gz, asc = index.with_name(index_name + ".gz"), index.with_name(index_name + ".asc")
    _publish(text.encode("utf-8"), index, gz, asc, Keyring(gnupghome, agent=True), fpr)
    return BuildResult(index, gz, asc, fpr, apps)


def _publish(data: bytes, index: Path, gz: Path, asc: Path, ring: Keyring, fpr: str) -> None:
    """Write and sign everything under temp names first, so a failure (e.g. the key cannot
    sign) changes nothing; then rename: data, then .gz, then the signature."""
    staged = {final: final.with_name(f".{final.name}.new") for final in (index, gz, asc)}
    try:
        atomic.write_bytes(staged[index], data)
        with (
            atomic.atomic_open(staged[gz]) as raw,
            gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out,
        ):
            out.write(data)
        ring.sign_detached(staged[index], staged[asc], fpr)
        for final, tmp in staged.items():
            atomic.commit_file(tmp, final)
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)


@dataclass
class CatalogReport:
    index: Path
    fingerprint: str | None = None
    sig_timestamp: int | None = None
    templates: list[tuple[str, str]] = field(default_factory=list)  # (template, status)
    problems: list[str] = field(default_factory=list)
    in_pveam_keyring: bool = False  # whether this host's pveam would accept the signer

    @property
    def ok(self) -> bool:
        return not self.problems


def _same_content(gz: Path, plain: Path) -> bool:
    try:
        with gzip.open(gz, "rb") as a, open(plain, "rb") as b:
            while True:
                x, y = a.read(CHUNK_SIZE), b.read(CHUNK_SIZE)
                if x != y:
                    return False
                if not x:
                    return True
    except (OSError, EOFError, zlib.error):
        return False


def _local_file(directory: Path, location: str) -> Path | None:
    rel = PurePosixPath(location)
    if rel.is_absolute() or ".." in rel.parts:
        return None
    return directory.joinpath(*rel.parts)


def _check_template(directory: Path, app: Appliance) -> str:
    location = app.location or f"{app.section}/{app.template}"
    if ABSOLUTE_URL_RE.match(location):
        return "skipped (absolute Location)"
    local = _local_file(directory, location)
    if local is None:
        return f"unsafe Location '{location}'"
    if not local.is_file():
        return "missing"
    try:
        algorithm, expect = expected_checksum(app)
    except VerifyError as err:
        return str(err)
    got = hash_file(local, algorithm)
    return "ok" if got == expect else f"checksum mismatch: got '{got}' != expect '{expect}'"


def verify_catalog(
    directory: Path,
    *,
    key: str,
    gnupghome: Path | None = None,
    index_name: str = INDEX_NAME,
) -> CatalogReport:
    """Check the catalog in ``directory`` against ``key``, looked up in ``gnupghome`` (by
    default gpg's own home, as for :func:`build_catalog`). Problems are collected in the
    report, not raised."""
    fpr = _key(key)
    index = directory / index_name
    report = CatalogReport(index)
    if not index.is_file():
        report.problems.append(f"'{index}' does not exist")
        return report
    keyring = Keyring(gnupghome)
    report.in_pveam_keyring = pveam_keys.has_key(fpr)
    check = keyring.verify_detached(index, index.with_name(index_name + ".asc"))
    signed = check.signed_by([fpr])
    if not check.valid:
        report.problems.append(f"unable to verify signature - {check.status}")
    elif signed is None:
        report.problems.append(f"signed by key {check.fingerprint}, not by {fpr}")
    else:
        report.fingerprint, report.sig_timestamp = signed
    gz = index.with_name(index_name + ".gz")
    if gz.exists() and not _same_content(gz, index):
        report.problems.append(f"'{gz.name}' does not unpack to '{index.name}'")
    try:
        text = index.read_bytes().decode("utf-8", errors="replace")
        result = parse_aplinfo(text, "file://" + str(directory), strict=True)
    except AplinfoError as err:
        report.problems.append(str(err))
        return report
    report.problems += result.warnings
    for app in result.appliances:
        status = _check_template(directory, app)
        report.templates.append((app.template, status))
        if status != "ok" and not status.startswith("skipped"):
            report.problems.append(f"{app.template}: {status}")
    return report

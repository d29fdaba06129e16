"""The site's repository signing keys as the roles take them (``gf_repository_keys``)."""

from __future__ import annotations

from typing import Any

from ..site.model import Repositories, Repository

ARMOURED = b"-----BEGIN PGP PUBLIC KEY BLOCK-----"


def repository_keys(repositories: Repositories) -> dict[str, dict[str, Any]]:
    """Per repository that names a key: ``signed_by`` (the key file's absolute path on the provisioning machine),
    ``armored`` (APT reads an ASCII-armoured key as ``.asc``, a binary one as ``.gpg``) and ``fingerprint``."""
    keys: dict[str, dict[str, Any]] = {}
    for name in type(repositories).model_fields:
        repo = getattr(repositories, name)
        if not isinstance(repo, Repository) or (repo.signed_by is None and repo.fingerprint is None):
            continue
        entry: dict[str, Any] = {"signed_by": None, "armored": None, "fingerprint": repo.fingerprint}
        if repo.signed_by is not None:
            with open(repo.signed_by, "rb") as key:
                entry["signed_by"] = str(repo.signed_by)
                entry["armored"] = key.read(4096).lstrip().startswith(ARMOURED)
        keys[name] = entry
    return keys

"""SHA-1 and SHA-256 from CPython's own implementations, not hashlib's: hashlib loads OpenSSL's libcrypto, ~4 MB of
RSS, and an agent without TLS has no other use for it. Where a Python lacks them, hashlib's are used."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Protocol


class Digest(Protocol):
    def hexdigest(self) -> str: ...


def _builtin(name: str, modules: tuple[str, ...]) -> Callable[[bytes], Digest]:
    for module in modules:
        try:
            return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]
        except (ImportError, AttributeError):
            continue
    hashlib = importlib.import_module("hashlib")
    return getattr(hashlib, name)  # type: ignore[no-any-return]


sha1 = _builtin("sha1", ("_sha1",))
sha256 = _builtin("sha256", ("_sha256", "_sha2"))  # _sha2 from Python 3.12

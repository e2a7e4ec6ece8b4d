"""Bearer-token authentication and the role and tenant policy.

Tokens are JWTs signed with Ed25519 (algorithm pinned to EdDSA); ``iss``, ``aud``,
``exp`` and ``sub`` are required. Local development generates a key pair under
``var/keys`` on first use; anywhere else the public key must be configured.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.errors import AuthenticationError, ForbiddenError
from shared.schools import municipality_of, reference_municipalities

ALGORITHM = "EdDSA"
ISSUER = "pumpurs"
AUDIENCE = "pumpurs-api"

TEACHER = "teacher"
DIRECTOR = "director"
MUNICIPAL_COORDINATOR = "municipal_coordinator"
NATIONAL_COORDINATOR = "national_coordinator"
AUDITOR = "auditor"
OPERATOR = "operator"
DATA_PROTECTION_OFFICER = "data_protection_officer"

ROLES = frozenset(
    {
        TEACHER,
        DIRECTOR,
        MUNICIPAL_COORDINATOR,
        NATIONAL_COORDINATOR,
        AUDITOR,
        OPERATOR,
        DATA_PROTECTION_OFFICER,
    }
)
SCHOOL_ROLES = frozenset({TEACHER, DIRECTOR})
# Roles that read across all tenants.
NATIONWIDE_ROLES = frozenset({NATIONAL_COORDINATOR, AUDITOR, DATA_PROTECTION_OFFICER})


# A school's municipality, if the service knows the school.
Locator = Callable[[str], str | None]


@dataclass(frozen=True)
class Principal:
    sub: str
    role: str
    school: str | None = None
    municipality: str | None = None

    def require(self, *roles: str) -> None:
        if self.role not in roles:
            raise ForbiddenError(f"role {self.role} may not do this")

    def sees_school(self, school_id: str, where: Locator = municipality_of) -> bool:
        """Whether this principal's tenant includes the school. ``where`` finds a school's
        municipality; a service that knows the schools registered since the shipped
        reference data passes its own (asked only for a municipal coordinator)."""
        if self.role in NATIONWIDE_ROLES:
            return True
        if self.role in SCHOOL_ROLES:
            return self.school == school_id
        if self.role == MUNICIPAL_COORDINATOR:
            return self.municipality is not None and where(school_id) == self.municipality
        return False

    def require_school(self, school_id: str, where: Locator = municipality_of) -> None:
        if not self.sees_school(school_id, where):
            raise ForbiddenError("this school is outside your tenant")


def visible_schools(
    principal: Principal,
    requested: str | None,
    directory: Callable[[], Mapping[str, str]] = reference_municipalities,
) -> list[str] | None:
    """The schools a list may show: the tenant's, narrowed by the request (None: all).
    ``directory`` gives every school the service knows with its municipality (asked only
    for a municipal coordinator)."""
    if principal.role in NATIONWIDE_ROLES:
        return [requested] if requested else None
    if principal.role in SCHOOL_ROLES and principal.school:
        schools = [principal.school]
    else:
        known = directory()
        schools = [s for s in known if principal.sees_school(s, known.get)]
    return [s for s in schools if s == requested] if requested else schools


def principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    role = claims.get("role")
    if role not in ROLES:
        raise AuthenticationError("token carries no valid role")
    school, municipality = claims.get("school"), claims.get("municipality")
    if role in SCHOOL_ROLES and not school:
        raise AuthenticationError("a school role needs a school claim")
    if role == MUNICIPAL_COORDINATOR and not municipality:
        raise AuthenticationError("a municipal coordinator needs a municipality claim")
    return Principal(str(claims["sub"]), role, school, municipality)


def load_public_keys(pem: bytes) -> list[Any]:
    """Every public key in a PEM text: during a key rotation it holds the old and the new."""
    marker = b"-----BEGIN PUBLIC KEY-----"
    blocks = [marker + block for block in pem.split(marker)[1:]]
    if not blocks:
        raise ValueError("no PEM public key in the token verification key")
    return [serialization.load_pem_public_key(block) for block in blocks]


class TokenVerifier:
    """Verifies tokens against one or more public keys (more than one while rotating)."""

    def __init__(self, public_key_pem: bytes, leeway: int = 10, remember: int = 4096) -> None:
        self._keys = load_public_keys(public_key_pem)
        self._leeway = leeway
        # Tokens whose signature and claims were verified: token -> (principal, exp). A hit
        # still checks the expiry; any other byte of the token makes it a different key.
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._remember = remember

    def verify(self, authorization: str | None) -> Principal:
        if not authorization or not authorization.startswith("Bearer "):
            raise AuthenticationError("a bearer token is required")
        token = authorization[len("Bearer ") :].strip()
        known = self._verified.get(token)
        if known is not None:
            if time.time() <= known[1] + self._leeway:
                return known[0]
            self._verified.pop(token, None)
        principal, exp = self._decode(token)
        self._verified[token] = (principal, exp)
        if len(self._verified) > self._remember:
            self._verified.popitem(last=False)
        return principal

    def _decode(self, token: str) -> tuple[Principal, float]:
        for key in self._keys[:-1]:
            try:
                return self._decode_with(token, key)
            except AuthenticationError as exc:
                if not isinstance(exc.__cause__, jwt.InvalidSignatureError):
                    raise  # only a signature can be another key's
        return self._decode_with(token, self._keys[-1])

    def _decode_with(self, token: str, key: Any) -> tuple[Principal, float]:
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "sub", "iss", "aud", "role"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("the token has expired") from None
        except jwt.InvalidSignatureError as exc:
            raise AuthenticationError("the token is not valid (InvalidSignatureError)") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthenticationError(f"the token is not valid ({type(exc).__name__})") from None
        return principal_from_claims(claims), float(claims["exp"])


# -- keys --------------------------------------------------------------------------


def keys_dir(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    return Path(environ.get("PUMPURS_KEYS_DIR", "var/keys"))


def _is_local(environ: Mapping[str, str]) -> bool:
    return environ.get("PUMPURS_ENV", "development") == "development"


def development_private_key(environ: Mapping[str, str] | None = None) -> Ed25519PrivateKey:
    """The local signing key, generated on first use (never committed: var/ is ignored)."""
    environ = os.environ if environ is None else environ
    if not _is_local(environ):
        raise RuntimeError("development tokens exist only with PUMPURS_ENV=development")
    return generated_private_key(keys_dir(environ) / "jwt-ed25519.pem")


def write_once(path: Path, content: bytes) -> bytes:
    """``path``'s content, written as ``content`` (mode 0600) if the file did not exist.

    The file appears whole or not at all (written aside, then hard-linked into place), so
    processes starting together all read the one key that won, never a half-written one."""
    if path.exists():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, aside = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        with contextlib.suppress(FileExistsError):  # another process won: use theirs
            os.link(aside, path)
    finally:
        os.unlink(aside)
    return path.read_bytes()


def generated_private_key(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 key kept in ``path`` (PEM, mode 0600), generated there on first use."""
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key = serialization.load_pem_private_key(write_once(path, pem), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def public_key_pem(environ: Mapping[str, str] | None = None) -> bytes:
    """The verification key(s): PUMPURS_JWT_PUBLIC_KEY(_FILE), or the development key's.

    The value may hold several PEM public keys: a token signed by any of them is accepted
    (rotation: add the new key, switch the signer, drop the old key once its tokens expire).
    """
    environ = os.environ if environ is None else environ
    if environ.get("PUMPURS_JWT_PUBLIC_KEY"):
        return environ["PUMPURS_JWT_PUBLIC_KEY"].encode()
    if environ.get("PUMPURS_JWT_PUBLIC_KEY_FILE"):
        return Path(environ["PUMPURS_JWT_PUBLIC_KEY_FILE"]).read_bytes()
    if not _is_local(environ):
        raise RuntimeError("PUMPURS_JWT_PUBLIC_KEY or PUMPURS_JWT_PUBLIC_KEY_FILE must be set")
    return (
        development_private_key(environ)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def mint_token(
    role: str,
    *,
    sub: str,
    school: str | None = None,
    municipality: str | None = None,
    ttl_seconds: int = 8 * 3600,
    environ: Mapping[str, str] | None = None,
) -> str:
    principal_from_claims(
        {"sub": sub, "role": role, "school": school, "municipality": municipality}
    )
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": sub,
        "role": role,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_seconds,
    }
    if school:
        claims["school"] = school
    if municipality:
        claims["municipality"] = municipality
    return jwt.encode(claims, development_private_key(environ), algorithm=ALGORITHM)

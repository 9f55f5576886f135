"""Authorization rules: required roles, and the role a call assumes."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence

from dbos._execution.context import Auth
from dbos.error import DBOSNotAuthorizedError


@dataclass
class RoleSpec:
    """The roles a function requires; filled by @required_roles or a class default."""

    roles: Optional[list[str]] = None
    explicit: bool = False


def authorize(name: str, required: Optional[Sequence[str]], auth: Auth) -> Auth:
    """Check ``auth`` against ``required``; return it with the granting role assumed.

    The first required role the user holds is the assumed role. No required
    roles: the auth passes through unchanged.
    """
    if not required:
        return auth
    held = set(auth.roles or ())
    for role in required:
        if role in held:
            return replace(auth, assumed_role=role)
    who = f"user {auth.user!r} with roles {sorted(held)}" if auth.user is not None else "an unauthenticated caller"
    raise DBOSNotAuthorizedError(
        f"Function {name} requires one of the roles {list(required)}; it was called by {who}"
    )

"""Authorization rules: required roles, and the role a call assumes."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Optional, Sequence

from dbos._execution import context
from dbos._execution.context import Auth, Ctx, WorkflowRun
from dbos.error import DBOSNotAuthorizedError

if TYPE_CHECKING:
    from dbos._execution.registry import WorkflowInfo


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


def caller_auth(ctx: Ctx, parent: Optional[WorkflowRun]) -> Auth:
    """Who calls: the context's authentication (or a request's, DBOS(fastapi=...)), else
    the parent workflow's."""
    own = context.auth_of(ctx)
    return parent.auth if parent is not None and own.user is None else own


def refuse_unauthorized(info: "WorkflowInfo") -> None:
    """A direct call by a caller lacking the workflow's required roles raises at once,
    before it takes a step ID or writes anything (as in DBOS)."""
    spec = info.roles
    if spec is not None and spec.roles:
        ctx = context.current()
        authorize(info.name, spec.roles, caller_auth(ctx, ctx.run if not ctx.in_step else None))


def refuse_recorded_caller(info: "WorkflowInfo", run: WorkflowRun) -> None:
    """Refuse to run a workflow whose recorded caller lacks its required roles: the error
    is its outcome (a started or enqueued workflow, recorded before the check)."""
    spec = info.roles
    if spec is not None and spec.roles:
        authorize(info.name, spec.roles, run.auth)

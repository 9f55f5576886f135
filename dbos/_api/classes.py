"""Classes, configured instances and roles: @dbos_class, DBOSConfiguredInstance,
@required_roles and @default_required_roles."""

from __future__ import annotations

from typing import Any, Callable, List, TypeVar

from dbos._execution.auth import RoleSpec
from dbos._execution.registry import REGISTRY
from dbos.error import DBOSException

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)


def _check_roles(roles: Any, what: str) -> List[str]:
    if isinstance(roles, str) or not isinstance(roles, (list, tuple)) or not all(isinstance(r, str) for r in roles):
        raise DBOSException(f"{what} takes a list of role names, got {roles!r}")
    return list(roles)


def required_roles(roles: List[str]) -> Callable[[F], F]:
    """Only callers holding one of ``roles`` may call the function."""
    checked = _check_roles(roles, "required_roles")

    def decorate(func: F) -> F:
        spec = getattr(func, "__dbos_roles__", None)
        if isinstance(spec, RoleSpec):
            spec.roles, spec.explicit = checked, True
        else:  # applied below @DBOS.workflow()/step(): the DBOS decorator picks it up
            setattr(func, "__dbos_required_roles__", checked)
        return func

    return decorate


def default_required_roles(roles: List[str]) -> Callable[[C], C]:
    """Roles required by every DBOS function of the class that names none itself."""
    checked = _check_roles(roles, "default_required_roles")

    def decorate(cls: C) -> C:
        setattr(cls, "__dbos_default_roles__", checked)
        _apply_class(cls)
        return cls

    return decorate


def dbos_class(class_name: str | None = None) -> Callable[[C], C]:
    """Register a class whose methods are workflows, steps or transactions."""

    def decorate(cls: C) -> C:
        name = class_name or cls.__qualname__
        REGISTRY.add_class(name, cls)
        setattr(cls, "__dbos_class_name__", name)
        _apply_class(cls)
        return cls

    return decorate


def _apply_class(cls: type) -> None:
    defaults = getattr(cls, "__dbos_default_roles__", None)
    class_name = getattr(cls, "__dbos_class_name__", cls.__qualname__)
    for member in vars(cls).values():
        func = getattr(member, "__func__", member)  # staticmethod / classmethod
        spec = getattr(func, "__dbos_roles__", None)
        if isinstance(spec, RoleSpec) and not spec.explicit:
            spec.roles = list(defaults) if defaults is not None else None
        for attr in ("__dbos_workflow__", "__dbos_temp_workflow__"):
            info = getattr(func, attr, None)
            if info is not None:
                info.class_name = class_name


def register_instance(inst: object) -> None:
    config_name = getattr(inst, "config_name", None)
    if not isinstance(config_name, str) or not config_name:
        raise DBOSException(f"register_instance needs an instance with a config_name, got {inst!r}")
    class_name = getattr(type(inst), "__dbos_class_name__", None)
    if class_name is None:
        raise DBOSException(f"register_instance: class {type(inst).__qualname__} needs @DBOS.dbos_class()")
    REGISTRY.add_instance(class_name, config_name, inst)


class DBOSConfiguredInstance:
    """Base for instances whose methods are workflows; ``config_name`` names the instance,
    so a workflow recovered in another process finds its instance again."""

    def __init__(self, config_name: str) -> None:
        if not isinstance(config_name, str) or not config_name:
            raise DBOSException(f"config_name must be a non-empty string, got {config_name!r}")
        self.config_name = config_name
        class_name = getattr(type(self), "__dbos_class_name__", type(self).__qualname__)
        REGISTRY.add_instance(class_name, config_name, self)

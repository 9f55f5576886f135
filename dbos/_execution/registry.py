"""What the decorators register: workflows, steps, classes and configured instances.

Decorators run at import time, before any DBOS object exists, so the registry
is the one process-wide table; it is filled by imports and only read after.
Recovery finds a workflow's function by its registered name.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from dbos.error import DBOSConflictingRegistrationError, DBOSException


@dataclass
class WorkflowInfo:
    name: str
    func: Callable[..., Any]  # the user's function, undecorated
    is_async: bool
    max_recovery_attempts: int
    takes_self: bool  # first parameter is self/cls: an instance travels with the call
    class_name: Optional[str] = None
    roles: Optional[Any] = None  # a RoleSpec (see _execution.auth)
    # "step" or "transaction": the one-step workflow ``<temp>.<name>`` that runs a step or
    # transaction started, enqueued or (a transaction) called outside a workflow.
    temp_kind: Optional[str] = None
    user_func: Optional[Callable[..., Any]] = None  # that step's or transaction's own function


TEMP_PREFIX = "<temp>."


@dataclass
class StepOptions:
    name: str
    retries_allowed: bool = False
    interval_seconds: float = 1.0
    max_attempts: int = 3
    backoff_rate: float = 2.0
    # DBOS 2.x: with retries, a predicate on each failure (False: raise it, no retry;
    # may be async for an async step); for async steps, a per-attempt timeout and
    # whether cancelling the workflow interrupts a running attempt.
    should_retry: Optional[Callable[[BaseException], Any]] = None
    timeout_seconds: Optional[float] = None
    preemptible: bool = False


def _code(func: Callable[..., Any]) -> Any:
    return getattr(inspect.unwrap(func), "__code__", func)


def _same_class_definition(a: type, b: type) -> bool:
    """Two class objects made by one class statement run twice: their functions share code."""
    if (a.__module__, a.__qualname__) != (b.__module__, b.__qualname__):
        return False
    codes_a = {k: _code(getattr(v, "__func__", v)) for k, v in vars(a).items() if callable(getattr(v, "__func__", v))}
    codes_b = {k: _code(getattr(v, "__func__", v)) for k, v in vars(b).items() if callable(getattr(v, "__func__", v))}
    return codes_a.keys() == codes_b.keys() and all(codes_a[k] is codes_b[k] for k in codes_a)


def _where_class(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _where(func: Callable[..., Any]) -> str:
    code = getattr(inspect.unwrap(func), "__code__", None)
    place = f" ({code.co_filename}:{code.co_firstlineno})" if code is not None else ""
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', func)}{place}"


@dataclass
class Registry:
    workflows: dict[str, WorkflowInfo] = field(default_factory=dict)
    instances: dict[tuple[str, str], Any] = field(default_factory=dict)
    classes: dict[str, type] = field(default_factory=dict)
    class_roles: dict[str, list[str]] = field(default_factory=dict)
    queues: dict[str, Any] = field(default_factory=dict)  # name -> QueueSpec
    lock: threading.Lock = field(default_factory=threading.Lock)
    cleared: bool = False  # ``clear`` ran: what code still holds may need re-registering on use

    def add_workflow(self, info: WorkflowInfo) -> None:
        """Register a workflow under its name. A second function under a name already
        taken is an error (recovery could run only one of them); the same definition run
        again (its code object: a module reloaded, a function defined in a loop or a
        test) replaces the first."""
        with self.lock:
            existing = self.workflows.get(info.name)
            if info.temp_kind is not None:
                # As in DBOS 2.x: a step or transaction name used twice is not an error
                # (steps need no unique names); the last definition runs its workflow,
                # with a warning in DBOS's words when it is another function.
                old_fn, new_fn = (existing.user_func or existing.func) if existing else None, info.user_func or info.func
                if old_fn is not None and _code(old_fn) is not _code(new_fn):
                    logging.getLogger("dbos").warning(
                        "Duplicate registration of function '%s': %s replaces %s as the %s of that name "
                        "(started, enqueued or recovered, it runs the last one); give one of them another "
                        "name (name=...)", info.name[len(TEMP_PREFIX):], _where(new_fn), _where(old_fn), info.temp_kind)
                self.workflows[info.name] = info
                return
            if existing is not None and _code(existing.func) is not _code(info.func):
                raise DBOSConflictingRegistrationError(
                    info.name, f"workflow name {info.name!r} is already registered by {_where(existing.func)}; "
                    f"{_where(info.func)} cannot use it too: give one of them another name "
                    "(@DBOS.workflow(name=...))"
                )
            self.workflows[info.name] = info

    def workflow(self, name: str) -> Optional[WorkflowInfo]:
        found = self.workflows.get(name)
        return found if found is not None else INTERNAL_WORKFLOWS.get(name)

    def add_queue(self, spec: Any) -> None:
        with self.lock:
            if spec.name in self.queues:
                raise DBOSException(f"a queue named {spec.name!r} is already declared in this process")
            self.queues[spec.name] = spec

    def add_class(self, name: str, cls: type) -> None:
        """Register a ``@DBOS.dbos_class`` under its name. Another class under a taken name is
        an error (recovery finds instances and classmethods by it); the same class statement
        run again (a module reloaded, a class defined in a test) replaces the first."""
        with self.lock:
            existing = self.classes.get(name)
            if existing is not None and existing is not cls and not _same_class_definition(existing, cls):
                raise DBOSConflictingRegistrationError(
                    name, f"Duplicate type registration for class {name!r}: {_where_class(existing)} and "
                    f"{_where_class(cls)} (give one of them another name: @DBOS.dbos_class(class_name=...))"
                )
            self.classes[name] = cls

    def add_instance(self, class_name: str, config_name: str, instance: Any) -> None:
        """Register a configured instance. A second instance of one class under one config name
        is an error: a recovered workflow could find only one of them."""
        with self.lock:
            existing = self.instances.get((class_name, config_name))
            if existing is not None and existing is not instance and type(existing) is type(instance):
                raise DBOSConflictingRegistrationError(
                    f"{class_name}/{config_name}",
                    f"Duplicate instance registration for class {class_name!r} instance {config_name!r} "
                    "(each configured instance of a class needs its own config_name)",
                )
            self.instances[(class_name, config_name)] = instance

    def instance(self, class_name: str, config_name: str) -> Any:
        return self.instances.get((class_name, config_name))

    def clear(self) -> None:
        """Forget everything registered (``DBOS.destroy(destroy_registry=True)``): the next
        DBOS starts empty and the same workflow, class and queue names may be declared again."""
        with self.lock:
            self.workflows.clear()
            self.instances.clear()
            self.classes.clear()
            self.class_roles.clear()
            self.queues.clear()
            self.cleared = True

    def snapshot(self) -> tuple[dict[Any, Any], ...]:
        """Copies of the tables (tests that clear the registry put it back after)."""
        with self.lock:
            return (dict(self.workflows), dict(self.instances), dict(self.classes), dict(self.class_roles),
                    dict(self.queues))

    def restore(self, saved: tuple[dict[Any, Any], ...]) -> None:
        with self.lock:
            tables: tuple[dict[Any, Any], ...] = (
                self.workflows, self.instances, self.classes, self.class_roles, self.queues
            )
            for table, content in zip(tables, saved):
                table.clear()
                table.update(content)

    def ensure_call(self, info: WorkflowInfo, class_name: Optional[str], config_name: Optional[str],
                    instance: Any) -> None:
        """Re-register, on use, what a cleared registry forgot but code still holds (a
        module-level workflow, class or configured instance called after
        ``destroy(destroy_registry=True)``), so a queue or recovery finds it again by name.
        A name declared anew since the clear keeps its new meaning."""
        if info.name not in self.workflows and info.name not in INTERNAL_WORKFLOWS:
            with self.lock:
                self.workflows.setdefault(info.name, info)
        if class_name is not None and class_name not in self.classes:
            owner = instance if isinstance(instance, type) else type(instance) if instance is not None else None
            if owner is not None and getattr(owner, "__dbos_class_name__", None) == class_name:
                with self.lock:
                    self.classes.setdefault(class_name, owner)
        if config_name is not None and class_name is not None and (class_name, config_name) not in self.instances:
            with self.lock:
                self.instances.setdefault((class_name, config_name), instance)

    def ensure_queue(self, spec: Any) -> None:
        """Re-register a queue object used after the registry was cleared (see ``ensure_call``)."""
        if spec.name not in self.queues:
            with self.lock:
                self.queues.setdefault(spec.name, spec)

    def source_hash(self) -> str:
        """A stable hash of the registered workflows' source: the default app version."""
        digest = hashlib.sha256()
        for name in sorted(self.workflows):
            if self.workflows[name].temp_kind is not None:
                continue  # steps and transactions never counted: their temporary workflows neither
            digest.update(name.encode())
            try:
                digest.update(inspect.getsource(self.workflows[name].func).encode())
            except (OSError, TypeError):
                pass
        return digest.hexdigest()[:32]


REGISTRY = Registry()

# The library's own workflows (``<temp>.DBOS.send``): found by every registry's lookup, in
# none of their tables, never cleared; the app registers none of them.
INTERNAL_WORKFLOWS: dict[str, WorkflowInfo] = {}


def takes_self(func: Callable[..., Any]) -> bool:
    params = list(inspect.signature(func).parameters)
    return bool(params) and params[0] in ("self", "cls")

"""DBOS 2.x's workflow attributes: ``SetWorkflowAttributes`` (context_managers) records
them at creation, ``update_workflow_attributes`` replaces them, ``WorkflowStatus.attributes``
and ``list_workflows(attributes=...)`` read them. From a workflow the update is a
recorded step (``DBOS.updateWorkflowAttributes``), so a replay does not repeat it."""

from __future__ import annotations

from typing import Any, Dict, Optional

from dbos._api.handles import _as_step, as_step_async
from dbos._api.instance import runtime
from dbos._execution import context, management
from dbos._execution.runtime import Runtime

_STEP = "DBOS.updateWorkflowAttributes"


class _AttributesMixin:
    @classmethod
    def update_workflow_attributes(cls, workflow_id: str, attributes: Optional[Dict[str, Any]]) -> None:
        """Replace the workflow's attributes (None clears them)."""
        rt = runtime()
        _as_step(rt, _STEP, None, lambda: management.set_attributes(rt, workflow_id, attributes))

    @classmethod
    async def update_workflow_attributes_async(cls, workflow_id: str, attributes: Optional[Dict[str, Any]]) -> None:
        rt = runtime()
        await as_step_async(rt, _STEP, None, lambda: management.set_attributes(rt, workflow_id, attributes))


class ClientAttributesMixin:
    _rt: Runtime

    def update_workflow_attributes(self, workflow_id: str, attributes: Optional[Dict[str, Any]]) -> None:
        with context.updated(run=None):
            management.set_attributes(self._rt, workflow_id, attributes)

    async def update_workflow_attributes_async(self, workflow_id: str, attributes: Optional[Dict[str, Any]]) -> None:
        await self._rt.to_thread(self.update_workflow_attributes, workflow_id, attributes)

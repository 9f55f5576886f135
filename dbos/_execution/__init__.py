"""Durable-execution rules: workflows, steps, transactions, recovery, serialization.

Invariants kept here: a workflow's status row exists before its first step;
each step is recorded once under (workflow_id, function_id) before the next
starts; replay returns recorded outputs and runs only unrecorded steps; a
fresh workflow never reads its steps. No SQL lives here (see ``_storage``),
and no thread is started here (see ``_services``).
"""

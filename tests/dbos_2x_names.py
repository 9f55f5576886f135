"""The public names of DBOS Transact 2.31.1 (``pip download dbos==2.31.1``): its
``dbos.__all__``, the public methods of ``DBOS``, ``DBOSClient`` and ``Queue``, and the
classes of ``dbos.error``. tests/test_dbos_2x.py checks that each one either works or
raises a clear NotImplementedError here, never an AttributeError."""

MODULE_2_31 = [
    "DBOSConfig", "DBOS", "DBOSClient", "DBOSConfiguredInstance", "DBOSPortableJSONSerializer",
    "DBOSContextEnsure", "DBOSContextSetAuth", "DuplicationPolicy", "ScheduleInput", "EnqueueOptions",
    "KafkaMessage", "PortableWorkflowError", "PropagateOtelContext", "SetWorkflowAttributes",
    "SetWorkflowID", "SetWorkflowTimeout", "SetEnqueueOptions", "SendMessage", "StepInfo", "StepOptions",
    "WorkflowHandle", "WorkflowHandleAsync", "WorkflowSerializationFormat", "WorkflowSchedule",
    "ClientScheduleInput", "VersionInfo", "WorkflowStatus", "WorkflowStatusString", "error", "Queue",
    "Debouncer", "DebouncerClient", "Serializer", "pydantic_args_validator", "make_pydantic_args_validator",
    "run_dbos_database_migrations", "SQLAlchemyDatasource", "AsyncSQLAlchemyDatasource"
]

DBOS_2_31 = [
    "destroy", "launch", "reset_system_database", "register_instance", "register_queue",
    "register_queue_async", "retrieve_queue", "retrieve_queue_async", "delete_queue", "delete_queue_async",
    "list_queues", "list_queues_async", "workflow", "transaction", "step", "dbos_class",
    "default_required_roles", "required_roles", "scheduled", "kafka_consumer", "start_workflow",
    "start_workflow_async", "enqueue_workflow", "enqueue_workflow_async", "enqueue_workflow_with_options",
    "enqueue_workflow_with_options_async", "run_step", "run_step_async", "get_workflow_status",
    "get_workflow_status_async", "get_result", "get_result_async", "wait_first", "wait_first_async",
    "retrieve_workflow", "retrieve_workflow_async", "send", "send_async", "send_bulk", "send_bulk_async",
    "recv", "recv_async", "sleep", "sleep_async", "asyncio_wait", "set_event", "set_event_async",
    "get_event", "get_event_async", "get_all_events", "get_all_events_async", "cancel_workflow",
    "cancel_workflow_async", "cancel_workflows", "cancel_workflows_async", "update_workflow_attributes",
    "update_workflow_attributes_async", "delete_workflow", "delete_workflow_async", "delete_workflows",
    "delete_workflows_async", "resume_workflow", "resume_workflow_async", "resume_workflows",
    "resume_workflows_async", "set_workflow_delay", "set_workflow_delay_async", "fork_workflow",
    "fork_workflow_async", "list_workflows", "list_workflows_async", "list_queued_workflows",
    "list_queued_workflows_async", "list_workflow_steps", "list_workflow_steps_async", "create_schedule",
    "list_schedules", "get_schedule", "delete_schedule", "create_schedule_async", "list_schedules_async",
    "get_schedule_async", "delete_schedule_async", "pause_schedule", "resume_schedule", "apply_schedules",
    "apply_schedules_async", "backfill_schedule", "trigger_schedule", "list_application_versions",
    "get_latest_application_version", "set_latest_application_version", "list_application_versions_async",
    "get_latest_application_version_async", "set_latest_application_version_async", "application_version",
    "executor_id", "logger", "sql_session", "workflow_id", "step_id", "step_status", "span",
    "authenticated_user", "authenticated_roles", "assumed_role", "set_authentication", "write_stream",
    "close_stream", "read_stream", "read_stream_offset", "read_stream_offset_async", "write_stream_async",
    "close_stream_async", "read_stream_async", "patch", "patch_async", "deprecate_patch",
    "deprecate_patch_async", "tracer", "listen_queues", "alert_handler"
]

CLIENT_2_31 = [
    "check_connection", "check_connection_async", "destroy", "enqueue", "enqueue_async",
    "enqueue_in_transaction", "register_queue", "register_queue_async", "retrieve_queue",
    "retrieve_queue_async", "delete_queue", "delete_queue_async", "list_queues", "list_queues_async",
    "retrieve_workflow", "retrieve_workflow_async", "wait_first", "wait_first_async", "send", "send_async",
    "send_in_transaction", "send_bulk", "send_bulk_async", "send_bulk_in_transaction", "get_event",
    "get_event_async", "cancel_workflow", "cancel_workflow_async", "cancel_workflows",
    "cancel_workflows_async", "update_workflow_attributes", "update_workflow_attributes_async",
    "delete_workflow", "delete_workflow_async", "delete_workflows", "delete_workflows_async",
    "resume_workflow", "resume_workflow_async", "resume_workflows", "resume_workflows_async",
    "set_workflow_delay", "set_workflow_delay_async", "list_workflows", "list_workflows_async",
    "list_queued_workflows", "list_queued_workflows_async", "list_workflow_steps",
    "list_workflow_steps_async", "fork_workflow", "fork_workflow_async", "read_stream", "read_stream_async",
    "read_stream_offset", "read_stream_offset_async", "create_schedule", "list_schedules", "get_schedule",
    "delete_schedule", "create_schedule_async", "list_schedules_async", "get_schedule_async",
    "delete_schedule_async", "pause_schedule", "resume_schedule", "apply_schedules",
    "apply_schedules_async", "backfill_schedule", "trigger_schedule", "list_application_versions",
    "get_latest_application_version", "set_latest_application_version", "list_application_versions_async",
    "get_latest_application_version_async", "set_latest_application_version_async", "rename_application",
    "rename_application_async"
]

QUEUE_2_31 = [
    "concurrency", "get_concurrency_async", "set_concurrency", "set_concurrency_async",
    "global_concurrency", "get_global_concurrency_async", "set_global_concurrency",
    "set_global_concurrency_async", "partition_concurrency", "get_partition_concurrency_async",
    "set_partition_concurrency", "set_partition_concurrency_async", "partition_worker_concurrency",
    "get_partition_worker_concurrency_async", "set_partition_worker_concurrency",
    "set_partition_worker_concurrency_async", "partition_limiter", "get_partition_limiter_async",
    "set_partition_limiter", "set_partition_limiter_async", "worker_concurrency",
    "get_worker_concurrency_async", "set_worker_concurrency", "set_worker_concurrency_async", "limiter",
    "get_limiter_async", "set_limiter", "set_limiter_async", "priority_enabled",
    "get_priority_enabled_async", "set_priority_enabled", "set_priority_enabled_async", "partition_queue",
    "get_partition_queue_async", "set_partition_queue", "set_partition_queue_async", "polling_interval_sec",
    "get_polling_interval_sec_async", "set_polling_interval_sec", "set_polling_interval_sec_async",
    "enqueue", "enqueue_async"
]

ERRORS_2_31 = [
    "DBOSException", "DBOSBaseException", "DBOSErrorCode", "DBOSConflictingWorkflowError",
    "DBOSRecoveryError", "DBOSInitializationError", "DBOSWorkflowFunctionNotFoundError",
    "DBOSNonExistentWorkflowError", "DBOSStreamTimeoutError", "DBOSStreamNondeterminismError",
    "MaxRecoveryAttemptsExceededError", "DBOSNotAuthorizedError", "DBOSMaxStepRetriesExceeded",
    "DBOSStepTimeoutError", "DBOSConflictingRegistrationError", "DBOSUnexpectedStepError",
    "DBOSPatchNondeterminismError", "DBOSQueueDeduplicatedError", "DBOSAwaitedWorkflowCancelledError",
    "DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded", "DBOSWorkflowCancelledError",
    "DBOSWorkflowConflictIDError"
]

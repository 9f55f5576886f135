"""Telemetry: logging (and, with the tracing work, OpenTelemetry spans)."""

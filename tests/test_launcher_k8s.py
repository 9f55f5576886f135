"""The coordinator's kubernetes launcher against a real cluster (issue 14): runs only
where ``KUBECONFIG`` reaches one. These machines have no container engine and no
Kubernetes, and no API server is faked, so here it is skipped, saying why."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest


def test_kubernetes_launcher_creates_a_real_job_when_a_cluster_is_reachable(tmp_path: Path) -> None:
    """Runs only where ``KUBECONFIG`` points at a reachable cluster; there is none on
    these machines (no container engine, no Kubernetes), and no API server is faked."""
    if not os.environ.get("KUBECONFIG"):
        pytest.skip("no Kubernetes cluster reachable: KUBECONFIG is not set on this machine")
    import logging

    from coordinator.launchers import KubernetesLauncher

    try:
        launcher = KubernetesLauncher(
            image_template="busybox:{version}", image_configmap=None,
            worker_args=["sh", "-c", "exit 0"], namespace=os.environ.get("DBOS_TEST_K8S_NAMESPACE", "default"),
            secret_name="dbos-fleet", logger=logging.getLogger("test"),
        )
        launcher.batch.list_namespaced_job(launcher.namespace, limit=1)
    except Exception as e:
        pytest.skip(f"no Kubernetes cluster reachable through KUBECONFIG: {e}")
    name = launcher.launch("1.36", "launch-test", f"lt-{uuid.uuid4().hex[:6]}")
    try:
        job = launcher.batch.read_namespaced_job(name, launcher.namespace)
        assert job.metadata is not None and job.metadata.labels["app.kubernetes.io/version"] == "1.36"
    finally:
        launcher.batch.delete_namespaced_job(name, launcher.namespace, propagation_policy="Background")

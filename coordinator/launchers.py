"""Launchers: how the coordinator starts an executor for a version with waiting work.

When to launch, how many, and the backoff after failures are the library's rules
(``dbos._services.coordinator``); this file only starts things:

- ``LocalLauncher``: a child process from ``--worker-cmd`` (development, tests,
  docker compose);
- ``KubernetesLauncher``: a ``batch/v1`` Job per launch with the official client;
  ``build_job`` makes its body and is what the tests and manifest checks call.

A launched worker runs with ``--exit-when-idle``, so it goes away once its
version has nothing left.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from dbos._storage.versions import LaunchRow


def worker_argv(command: str, version: str) -> list[str]:
    """``command`` split as a shell would (no shell runs it), ``{version}`` replaced in each word."""
    words = shlex.split(command)
    if not words:
        raise ValueError("--worker-cmd is empty")
    return [w.replace("{version}", version) for w in words]


class LocalLauncher:
    """Runs ``--worker-cmd`` as a child process with this process's environment plus
    ``DBOS__APPVERSION`` and a fresh ``DBOS__VMID``; its output goes to one log file
    per launch in ``log_dir``."""

    kind = "local"

    def __init__(self, command: str, log_dir: Path, env: Mapping[str, str], logger: logging.Logger) -> None:
        worker_argv(command, "v")  # a malformed command is an error at start, not at the first launch
        self.command = command
        self.log_dir = log_dir
        self.env = dict(env)
        self.logger = logger
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def launch(self, app_version: str, executor_id: str, launch_id: str) -> str:
        argv = worker_argv(self.command, app_version)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"launch-{_safe_name(app_version)}-{launch_id}.log"
        env = {**self.env, "DBOS__APPVERSION": app_version, "DBOS__VMID": executor_id}
        with open(log_path, "ab") as log:
            child = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.children[launch_id] = child
        self.logger.info("launched pid %d for version %s: %s (log %s)", child.pid, app_version,
                         shlex.join(argv), log_path)
        return str(child.pid)

    def failed(self, launch: LaunchRow) -> Optional[str]:
        self.reap()
        child = self.children.get(launch.launch_id)
        if child is None or child.returncode is None:
            return None
        log = self.log_dir / f"launch-{_safe_name(launch.app_version)}-{launch.launch_id}.log"
        return f"the worker exited with code {child.returncode} before it heartbeat (log {log})"

    def abandon(self, launch: LaunchRow) -> None:
        child = self.children.get(launch.launch_id)
        if child is not None and child.poll() is None:
            child.terminate()

    def reap(self) -> None:
        """Collect children that exited (no zombies); keep their exit codes."""
        for child in self.children.values():
            child.poll()

    def stop(self) -> None:
        """The coordinator stops: the launched workers keep running (they exit when idle)."""
        self.reap()


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:60] or "v"


def _dns_label(text: str, limit: int) -> str:
    label = re.sub(r"[^a-z0-9-]", "-", text.lower()).strip("-")
    return (label[:limit].rstrip("-")) or "v"


def build_job(
    *,
    app_version: str,
    launch_id: str,
    image: str,
    worker_args: Sequence[str],
    secret_name: str,
    namespace: str,
    app_name: str = "dbos-worker",
    ttl_seconds_after_finished: int = 300,
    backoff_limit: int = 2,
    active_deadline_seconds: int = 3600,
    service_account: Optional[str] = None,
) -> dict[str, Any]:
    """The ``batch/v1`` Job that runs one executor of ``app_version``.

    The worker's command is ``worker_args`` (which should carry ``--exit-when-idle``);
    ``DBOS__VMID`` is the pod's name (downward API), ``DBOS__APPVERSION`` the
    version, and the database and Redis settings come from ``secret_name``, the
    Secret the workers' Deployment uses."""
    name = f"{_dns_label(app_name, 20)}-{_dns_label(app_version, 24)}-{_dns_label(launch_id, 12)}"
    labels = {
        "app.kubernetes.io/name": _dns_label(app_name, 63),
        "app.kubernetes.io/version": _label_value(app_version),
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/managed-by": "dbos-coordinator",
        "dbos.dev/launch-id": _label_value(launch_id),
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 40,
        "containers": [{
            "name": "worker",
            "image": image,
            "args": list(worker_args),
            "env": [
                {"name": "DBOS__APPVERSION", "value": app_version},
                {"name": "DBOS__VMID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            ],
            "envFrom": [{"secretRef": {"name": secret_name}}],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
        }],
    }
    if service_account:
        pod_spec["serviceAccountName"] = service_account
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "ttlSecondsAfterFinished": ttl_seconds_after_finished,
            "backoffLimit": backoff_limit,
            "activeDeadlineSeconds": active_deadline_seconds,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def _label_value(text: str) -> str:
    value = re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:63].strip("-_.")
    return value or "v"


def in_cluster_namespace(default: str = "default") -> str:
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    try:
        return path.read_text().strip() or default
    except OSError:
        return default


class KubernetesLauncher:
    """A Job per launch (in-cluster config, else ``KUBECONFIG``). The image is
    ``image_template`` with ``{version}`` replaced, or the version's entry in the
    ConfigMap ``image_configmap`` (key: the version) when given."""

    kind = "kubernetes"

    def __init__(
        self,
        *,
        image_template: Optional[str],
        image_configmap: Optional[str],
        worker_args: Sequence[str],
        namespace: str,
        secret_name: str,
        logger: logging.Logger,
        app_name: str = "dbos-worker",
    ) -> None:
        if not image_template and not image_configmap:
            raise ValueError("the kubernetes launcher needs --image-template or --image-configmap")
        from kubernetes import client, config

        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config()  # type: ignore[no-untyped-call]  # KUBECONFIG or ~/.kube/config; raises if neither
        self.batch = client.BatchV1Api()
        self.core = client.CoreV1Api()
        self.image_template = image_template
        self.image_configmap = image_configmap
        self.worker_args = list(worker_args)
        self.namespace = namespace
        self.secret_name = secret_name
        self.app_name = app_name
        self.logger = logger

    def image_for(self, app_version: str) -> str:
        if self.image_configmap:
            cm = self.core.read_namespaced_config_map(self.image_configmap, self.namespace)
            image = (cm.data or {}).get(app_version)
            if image:
                return str(image)
            if not self.image_template:
                raise LookupError(f"ConfigMap {self.image_configmap} has no image for version {app_version!r}")
        assert self.image_template is not None
        return self.image_template.replace("{version}", app_version)

    def launch(self, app_version: str, executor_id: str, launch_id: str) -> str:
        body = build_job(
            app_version=app_version, launch_id=launch_id, image=self.image_for(app_version),
            worker_args=[a.replace("{version}", app_version) for a in self.worker_args],
            secret_name=self.secret_name, namespace=self.namespace,
            app_name=self.app_name,
        )
        job = self.batch.create_namespaced_job(self.namespace, body)  # type: ignore[arg-type]  # a dict body is accepted
        name = str(job.metadata.name if job.metadata is not None else body["metadata"]["name"])
        self.logger.info("created Job %s/%s for version %s", self.namespace, name, app_version)
        return name

    def failed(self, launch: LaunchRow) -> Optional[str]:
        if not launch.handle:
            return None
        try:
            job = self.batch.read_namespaced_job_status(launch.handle, self.namespace)
        except Exception as e:  # deleted, or the API is away: decided by the timeout
            self.logger.debug("cannot read Job %s: %s", launch.handle, e)
            return None
        for cond in (job.status.conditions if job.status is not None else None) or []:
            if cond.type == "Failed" and cond.status == "True":
                return f"Job {launch.handle} failed: {cond.reason}: {cond.message}"
        return None

    def abandon(self, launch: LaunchRow) -> None:
        if launch.handle:
            try:
                self.batch.delete_namespaced_job(launch.handle, self.namespace, propagation_policy="Background")
            except Exception as e:
                self.logger.warning("cannot delete Job %s: %s", launch.handle, e)

    def stop(self) -> None:
        pass


def child_env(db_url: str, redis_url: Optional[str]) -> dict[str, str]:
    """What a locally launched worker gets: this process's environment, with the
    database and Redis the coordinator was given."""
    env = dict(os.environ)
    env["DBOS_SYSTEM_DATABASE_URL"] = db_url
    if redis_url:
        env["DBOS_REDIS_URL"] = redis_url
    return env

"""The deployment artifacts (issue 14): Dockerfile, docker-compose.yml, k8s/.

No container engine and no cluster run here, so CI checks what does run:

- ``kubectl kustomize`` renders the base and each overlay, and every rendered
  object passes ``kubernetes-validate --strict`` against Kubernetes
  ``K8S_VERSION`` (KEDA's ScaledObject, whose CRD schema is not bundled, is the
  one object allowed to go unvalidated, and only in overlays/keda);
- the objects fit together: selectors select the pods, probes and Services name
  ports the containers open, the grace period outlasts the drain, the Role
  reaches Jobs only, the commands parse with the real ``dbos-worker`` and
  ``dbos-coordinator`` parsers;
- ``docker-compose.yml`` passes ``check-jsonschema --builtin-schema
  vendor.compose-spec``; its dbos services run as local processes
  (tests/compose_fleet.py) against a fresh database: a workflow completes, a
  killed worker's work is handed over by the coordinator;
- the Dockerfile's shape (base, non-root user, what it copies, its command) and
  the wheel it installs.

A missing tool (kubectl, kubernetes-validate, check-jsonschema) fails the test
and names what to install; it never skips.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
import sqlalchemy as sa
import yaml
from compose_fleet import (
    COMPOSE_FILE,
    ROOT,
    ComposeFleet,
    command_of,
    environment_of,
    flag_value,
    load_compose,
)
from conftest import _create_pg_database, _drop_pg_database, _require_postgres, _sqlalchemy_url, eventually
from fleet_helpers import REDIS_URL, require_redis
from sqlalchemy.pool import NullPool

from dbos import DBOSClient, EnqueueOptions

K8S_VERSION = "1.29.0"
NAMESPACE = "dbos-fleet"
KUSTOMIZATIONS = {"base": ROOT / "k8s", "two-versions": ROOT / "k8s/overlays/two-versions",
                  "keda": ROOT / "k8s/overlays/keda"}
# Kinds whose schema kubernetes-validate does not carry (CRDs), per kustomization.
UNVALIDATED_KINDS = {"keda": {("keda.sh/v1alpha1", "ScaledObject")}}
SECRET_KEYS = {"DBOS_SYSTEM_DATABASE_URL", "DBOS_REDIS_URL", "DBOS_ADMIN_TOKEN"}
EXAMPLE_APP = "examples/fleet_app.py"


def tool(name: str, install: str) -> str:
    for candidate in (Path(sys.executable).parent / name, shutil.which(name)):
        if candidate and Path(candidate).exists():
            return str(candidate)
    pytest.fail(f"{name} is not installed, and the deployment-artifact checks need it: {install}", pytrace=False)


def kubectl() -> str:
    return tool("kubectl", "install kubectl (v1.27+, it carries kustomize) and put it on PATH")


def run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


_renders: dict[str, str] = {}


def render(name: str) -> str:
    if name not in _renders:
        out = run([kubectl(), "kustomize", str(KUSTOMIZATIONS[name])])
        assert out.returncode == 0, f"kubectl kustomize {KUSTOMIZATIONS[name]} failed:\n{out.stderr}"
        _renders[name] = out.stdout
    return _renders[name]


def objects(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(render(name)) if d]


def find(objs: list[dict[str, Any]], kind: str, name: Optional[str] = None) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{deployment['metadata']['name']}: one container expected"
    return containers[0]  # type: ignore[no-any-return]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def parse_worker(argv: list[str]) -> argparse.Namespace:
    from worker.__main__ import parser

    assert Path(argv[0]).name == "dbos-worker", argv
    return parser().parse_args(argv[1:])


def parse_coordinator(argv: list[str]) -> argparse.Namespace:
    """Parse with dbos-coordinator's own parser (launcher flags included)."""
    from coordinator.__main__ import parser

    assert Path(argv[0]).name == "dbos-coordinator", argv
    return parser().parse_args(argv[1:])


# -- kustomize + kubernetes-validate -----------------------------------------------------


@pytest.mark.parametrize("name", list(KUSTOMIZATIONS))
def test_kustomization_renders_and_validates_strict(name: str, tmp_path: Path) -> None:
    validate = tool("kubernetes-validate", "pip install -e '.[test]' (or pip install kubernetes-validate)")
    objs = objects(name)
    assert objs, f"{name}: rendered nothing"
    rendered = tmp_path / f"{name}.yaml"
    rendered.write_text(render(name))
    out = run([validate, "--strict", "--kubernetes-version", K8S_VERSION, str(rendered)])
    lines = (out.stdout + out.stderr).splitlines()
    assert out.returncode == 0, f"kubernetes-validate failed for {name}:\n" + "\n".join(lines)
    passed = [ln for ln in lines if " passed for resource " in ln]
    allowed = UNVALIDATED_KINDS.get(name, set())
    for ln in lines:
        if " passed for resource " in ln or not ln.strip():
            continue
        m = re.search(r"Couldn't find schema for kind (\S+) with api version (\S+)", ln)
        assert m and (m.group(2), m.group(1)) in allowed, f"{name}: unexpected kubernetes-validate output: {ln}"
    unvalidated = [o for o in objs if (o["apiVersion"], o["kind"]) in allowed]
    assert len(passed) == len(objs) - len(unvalidated), "\n".join(lines)
    for o in objs:
        if o["kind"] != "Namespace":
            assert o["metadata"].get("namespace") == NAMESPACE, f"{o['kind']}/{o['metadata']['name']}: namespace"


def test_base_has_every_object_the_fleet_needs() -> None:
    objs = objects("base")
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objs)
    assert kinds == sorted([
        ("Namespace", NAMESPACE), ("ServiceAccount", "dbos-coordinator"), ("Role", "dbos-launcher"),
        ("RoleBinding", "dbos-launcher"), ("Secret", "dbos-fleet"), ("Deployment", "dbos-coordinator"),
        ("Deployment", "dbos-worker"), ("PodDisruptionBudget", "dbos-coordinator"),
        ("PodDisruptionBudget", "dbos-worker"), ("Service", "dbos-coordinator"), ("Service", "dbos-worker-metrics"),
    ]), kinds
    assert not find(objs, "ScaledObject"), "KEDA stays out of the base (it needs KEDA's CRDs)"


def test_coordinator_may_touch_jobs_in_its_namespace_only() -> None:
    objs = objects("base")
    role = one(objs, "Role", "dbos-launcher")
    assert [(r["apiGroups"], r["resources"]) for r in role["rules"]] == [(["batch"], ["jobs"])]
    assert not find(objs, "ClusterRole") and not find(objs, "ClusterRoleBinding")
    binding = one(objs, "RoleBinding", "dbos-launcher")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "dbos-launcher"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "dbos-coordinator", "namespace": NAMESPACE}]
    coord = one(objs, "Deployment", "dbos-coordinator")
    assert coord["spec"]["replicas"] == 2
    assert coord["spec"]["template"]["spec"]["serviceAccountName"] == "dbos-coordinator"
    worker = one(objs, "Deployment", "dbos-worker")
    assert worker["spec"]["template"]["spec"].get("automountServiceAccountToken") is False


def test_coordinator_command_and_launcher_settings() -> None:
    coord = container(one(objects("base"), "Deployment", "dbos-coordinator"))
    argv = coord["command"] + coord.get("args", [])
    args = parse_coordinator(argv)
    assert args.http_host == "0.0.0.0" and args.http_port == port_of(coord, "http")
    assert flag_value(argv, "--launcher") == "kubernetes"
    assert "{version}" in (flag_value(argv, "--image-template") or "")
    assert flag_value(argv, "--secret-name") == "dbos-fleet"
    assert flag_value(argv, "--namespace") == "$(POD_NAMESPACE)"
    job_worker = parse_worker(shlex.split(flag_value(argv, "--worker-cmd") or ""))
    assert job_worker.app == EXAMPLE_APP and job_worker.exit_when_idle is not None
    env = {e["name"]: e for e in coord.get("env", [])}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert_secret_env(objects("base"), coord)
    probe_paths = {coord[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe")}
    assert probe_paths == {"/healthz"}


def port_of(c: dict[str, Any], name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    assert name in ports, f"container {c['name']} has no port named {name}: {ports}"
    return int(ports[name])


def assert_secret_env(objs: list[dict[str, Any]], c: dict[str, Any]) -> None:
    """The container takes the database, Redis and admin-token settings from the Secret."""
    secret = one(objs, "Secret", "dbos-fleet")
    keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    assert SECRET_KEYS <= keys, f"the Secret lacks {SECRET_KEYS - keys}"
    refs = [e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e]
    assert refs == ["dbos-fleet"], f"container {c['name']}: envFrom {c.get('envFrom')}"
    literal = {e["name"] for e in c.get("env", []) if "value" in e}
    assert not literal & SECRET_KEYS, f"container {c['name']} sets {literal & SECRET_KEYS} outside the Secret"


def check_worker_deployment(objs: list[dict[str, Any]], name: str, version: str) -> None:
    dep = one(objs, "Deployment", name)
    pod = dep["spec"]["template"]
    selector = dep["spec"]["selector"]["matchLabels"]
    assert selector.get("app.kubernetes.io/version") == version, f"{name}: selector {selector}"
    assert selects(selector, pod["metadata"]["labels"])
    c = container(dep)
    argv = c["command"] + c.get("args", [])
    args = parse_worker(argv)
    assert args.app == EXAMPLE_APP and (ROOT / args.app).is_file()
    assert args.admin_host == "0.0.0.0" and args.admin_port == port_of(c, "admin")
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    assert grace > args.drain_timeout + 5, f"{name}: grace {grace} s does not outlast the {args.drain_timeout} s drain"
    env = {e["name"]: e for e in c["env"]}
    assert env["DBOS__VMID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    label_path = env["DBOS__APPVERSION"]["valueFrom"]["fieldRef"]["fieldPath"]
    m = re.fullmatch(r"metadata\.labels\['([^']+)'\]", label_path)
    assert m, label_path
    assert pod["metadata"]["labels"][m.group(1)] == version, f"{name}: the pod's {m.group(1)} label"
    assert_secret_env(objs, c)  # a non-loopback admin host needs DBOS_ADMIN_TOKEN
    assert c["livenessProbe"]["httpGet"] == {"path": "/dbos-healthz", "port": "admin"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert c["image"].endswith(f":{version}"), c["image"]
    pdbs = [p for p in find(objs, "PodDisruptionBudget") if selects(p["spec"]["selector"]["matchLabels"],
                                                                     pod["metadata"]["labels"])]
    assert len(pdbs) == 1, f"{name}: {len(pdbs)} PodDisruptionBudgets cover its pods"


def test_worker_deployment() -> None:
    check_worker_deployment(objects("base"), "dbos-worker", "v1")


def test_metrics_services_reach_the_pods() -> None:
    objs = objects("base")
    pods = {d["metadata"]["name"]: d["spec"]["template"] for d in find(objs, "Deployment")}
    expected = {"dbos-coordinator": ("dbos-coordinator", "http"), "dbos-worker-metrics": ("dbos-worker", "admin")}
    for svc_name, (dep_name, port_name) in expected.items():
        svc = one(objs, "Service", svc_name)
        assert selects(svc["spec"]["selector"], pods[dep_name]["metadata"]["labels"]), svc_name
        ports = [p["targetPort"] for p in svc["spec"]["ports"]]
        assert ports == [port_name], f"{svc_name}: target ports {ports}"
        c = pods[dep_name]["spec"]["containers"][0]
        assert pods[dep_name]["metadata"]["annotations"]["prometheus.io/port"] == str(port_of(c, port_name))


def test_two_versions_overlay_runs_v2_beside_v1() -> None:
    objs = objects("two-versions")
    check_worker_deployment(objs, "dbos-worker", "v1")
    check_worker_deployment(objs, "dbos-worker-v2", "v2")
    deps = [d for d in find(objs, "Deployment") if d["metadata"]["name"].startswith("dbos-worker")]
    for d in deps:
        others = [o for o in deps if o is not d]
        for o in others:
            assert not selects(d["spec"]["selector"]["matchLabels"], o["spec"]["template"]["metadata"]["labels"]), \
                f"{d['metadata']['name']} would adopt {o['metadata']['name']}'s pods"
    # The metrics Service still sees the workers of both versions.
    svc = one(objs, "Service", "dbos-worker-metrics")
    assert all(selects(svc["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"]) for d in deps)


def test_keda_overlay_scales_the_worker_deployment_on_the_coordinator() -> None:
    objs = objects("keda")
    scaled = one(objs, "ScaledObject", "dbos-worker")
    target = scaled["spec"]["scaleTargetRef"]
    one(objs, target["kind"], target["name"])
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "metrics-api"
    m = re.fullmatch(r"http://([^./]+)\.([^./]+)\.svc\.cluster\.local:(\d+)(/\S*)", trigger["metadata"]["url"])
    assert m, trigger["metadata"]["url"]
    svc = one(objs, "Service", m.group(1))
    assert m.group(2) == NAMESPACE and int(m.group(3)) in [p["port"] for p in svc["spec"]["ports"]]
    assert m.group(4) == "/api/versions"


def test_launcher_job_bodies_validate_strict_and_stay_out_of_the_deployments(tmp_path: Path) -> None:
    """The Jobs the kubernetes launcher would create from the base's coordinator flags:
    valid for the pinned Kubernetes, and covered by no worker Deployment or PDB."""
    from coordinator.launchers import build_job, worker_argv

    validate = tool("kubernetes-validate", "pip install -e '.[test]' (or pip install kubernetes-validate)")
    objs = objects("base")
    argv = container(one(objs, "Deployment", "dbos-coordinator"))["command"]
    template, worker_cmd = flag_value(argv, "--image-template"), flag_value(argv, "--worker-cmd")
    assert template and worker_cmd
    jobs = [build_job(app_version=v, launch_id=f"l{n}abcdef", image=template.replace("{version}", v),
                      worker_args=worker_argv(worker_cmd, v), secret_name=str(flag_value(argv, "--secret-name")),
                      namespace=NAMESPACE)
            for n, v in enumerate(["v1", "v2", "2026.12.03+build.7"])]
    path = tmp_path / "jobs.yaml"
    path.write_text(yaml.safe_dump_all(jobs))
    out = run([validate, "--strict", "--kubernetes-version", K8S_VERSION, str(path)])
    lines = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.strip()]
    assert out.returncode == 0 and len(lines) == len(jobs) and all(" passed " in ln for ln in lines), "\n".join(lines)
    selectors = [o["spec"]["selector"]["matchLabels"] for o in objs if o["kind"] in ("Deployment", "PodDisruptionBudget")]
    for job in jobs:
        pod_labels = job["spec"]["template"]["metadata"]["labels"]
        assert not [sel for sel in selectors if selects(sel, pod_labels)], f"{job['metadata']['name']}'s pods"
        envs = job["spec"]["template"]["spec"]["containers"][0].get("envFrom", [])
        assert {"secretRef": {"name": "dbos-fleet"}} in envs


# -- docker-compose.yml -------------------------------------------------------------------


def test_compose_file_passes_the_compose_spec() -> None:
    check = tool("check-jsonschema", "pip install -e '.[test]' (or pip install check-jsonschema)")
    out = run([check, "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)])
    assert out.returncode == 0, f"check-jsonschema failed:\n{out.stdout}{out.stderr}"


def test_compose_services_fit_together() -> None:
    services = load_compose()["services"]
    for infra in ("postgres", "redis"):
        assert services[infra].get("healthcheck"), f"{infra} needs a health check"
    workers = {n: s for n, s in services.items() if command_of(s)[:1] == ["dbos-worker"]}
    coordinators = {n: s for n, s in services.items() if command_of(s)[:1] == ["dbos-coordinator"]}
    assert len(workers) == 3 and len(coordinators) == 2, (sorted(workers), sorted(coordinators))
    vmids = [environment_of(s)["DBOS__VMID"] for s in workers.values()]
    assert len(set(vmids)) == 3, vmids
    assert {environment_of(s)["DBOS__APPVERSION"] for s in workers.values()} == {"v1"}
    for name, s in {**workers, **coordinators}.items():
        env = environment_of(s)
        assert {"DBOS_SYSTEM_DATABASE_URL", "DBOS_REDIS_URL"} <= set(env), name
        deps = s.get("depends_on", {})
        assert all(deps.get(i, {}).get("condition") == "service_healthy" for i in ("postgres", "redis")), name
        health = " ".join(s["healthcheck"]["test"])
        port = flag_value(command_of(s), "--admin-port") or flag_value(command_of(s), "--http-port")
        assert f"127.0.0.1:{port}/" in health, f"{name}: the health check does not hit port {port}"
    for name, s in workers.items():
        args = parse_worker(command_of(s))
        assert args.app == EXAMPLE_APP
        grace = re.fullmatch(r"(\d+)s", s.get("stop_grace_period", ""))
        assert grace and int(grace.group(1)) > args.drain_timeout, f"{name}: stop_grace_period vs the drain"
        if args.admin_host not in ("127.0.0.1", "localhost"):
            assert environment_of(s).get("DBOS_ADMIN_TOKEN"), f"{name}: a non-loopback admin host needs a token"
    for name, s in coordinators.items():
        argv = command_of(s)
        parse_coordinator(argv)
        assert flag_value(argv, "--launcher") == "local", f"{name}: the local launcher (only the leader launches)"
        worker_cmd = shlex.split(flag_value(argv, "--worker-cmd") or "")
        worker_args = parse_worker(worker_cmd)
        assert worker_args.app == EXAMPLE_APP and worker_args.exit_when_idle is not None
        # The image's /app is not writable by its user: launch logs go to /tmp.
        assert (flag_value(argv, "--launch-log-dir") or "").startswith("/tmp/"), name


# -- the Dockerfile -----------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, rest) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def test_dockerfile_shape() -> None:
    steps = dockerfile()
    args = dict(r.split("=", 1) for i, r in steps if i == "ARG" and "=" in r)
    bases = [r.split()[0] for i, r in steps if i == "FROM"]
    assert {args.get(b.strip("${}"), b) for b in bases} == {"python:3.11-slim"}, bases
    last_stage = max(n for n, (i, _) in enumerate(steps) if i == "FROM")
    users = [r for i, r in steps[last_stage:] if i == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), f"the image must run as non-root: {users}"
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for i, r in steps:
        if i == "COPY" and "--from=" not in r:
            sources = [s for s in r.split() if not s.startswith("--")][:-1]
            for src in sources:
                assert (ROOT / src).exists(), f"COPY {src}: no such path"
                assert f"!{src.rstrip('/')}/" in ignored or f"!{src}" in ignored, f"COPY {src}: excluded by .dockerignore"
    assert any(i == "COPY" and r.split()[-2].startswith("examples") for i, r in steps[last_stage:])
    cmd = json.loads(next(r for i, r in reversed(steps) if i == "CMD"))
    args_ns = parse_worker(cmd)
    assert args_ns.app == EXAMPLE_APP and (ROOT / args_ns.app).is_file()


def test_the_build_stage_builds_a_wheel_with_both_commands(tmp_path: Path) -> None:
    """The Dockerfile's build stage, without Docker: its COPY lines into a bare
    directory, then its `pip wheel` (of the project alone: this venv has the
    dependencies). The wheel holds the three packages and both commands."""
    steps = dockerfile()
    build_end = [n for n, (i, _) in enumerate(steps) if i == "FROM"][1]
    context = tmp_path / "src"
    context.mkdir()
    for i, r in steps[:build_end]:
        if i == "COPY":
            *sources, dest = r.split()
            for src in sources:
                target = context / dest if dest.endswith("/") and dest != "./" else context
                if (ROOT / src).is_dir():
                    shutil.copytree(ROOT / src, target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(ROOT / src, target)
    wheels = tmp_path / "wheels"
    out = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(wheels), str(context)],
              timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    (wheel,) = wheels.glob("dbos_fleet-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        entry_points = next(z.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    for package in ("dbos/__init__.py", "worker/__main__.py", "coordinator/__main__.py"):
        assert package in names, package
    assert "dbos-worker = worker.__main__:main" in entry_points
    assert "dbos-coordinator = coordinator.__main__:main" in entry_points


# -- the compose fleet as local processes ---------------------------------------------------


@pytest.fixture
def compose_fleet(tmp_path: Path) -> Iterator[ComposeFleet]:
    _require_postgres()
    require_redis()
    name, url = _create_pg_database()
    fleet = ComposeFleet(url, REDIS_URL, tmp_path)
    try:
        fleet.start()
        eventually(fleet.ready, timeout=30, interval=0.1, what="(compose workers ready, a coordinator leads)")
        yield fleet
    finally:
        fleet.stop()
        _drop_pg_database(name)


def status_rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(_sqlalchemy_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql))]
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_compose_fleet_completes_the_client_services_workflows(compose_fleet: ComposeFleet) -> None:
    """`docker compose run --rm client`, locally: its orders complete on the v1 workers."""
    client = load_compose()["services"]["client"]
    svc = compose_fleet.prepare("client", client, command_of(client))
    out = subprocess.run(svc.argv, env=svc.env, cwd=ROOT, capture_output=True, text=True, timeout=40)
    assert out.returncode == 0, out.stdout + out.stderr
    results = [eval_list(ln) for ln in out.stdout.splitlines() if ln.startswith("   ")]
    assert len(results) == 5, out.stdout
    vmids = {w.env["DBOS__VMID"] for w in compose_fleet.by_kind("worker")}
    for steps in results:
        assert len(steps) == 4 and {s.split(": ")[1] for s in steps} <= vmids, steps
    rows = status_rows(compose_fleet.db_url, "SELECT status, application_version FROM dbos.workflow_status")
    assert rows and set(rows) == {("SUCCESS", "v1")}, rows


def enqueue(client: DBOSClient, count: int, version: str, step_seconds: float) -> list[str]:
    """examples/fleet_app.py's enqueue, by name: importing the app here would register its
    workflows and queue in this test process."""
    ids = []
    for n in range(count):
        options: EnqueueOptions = {"queue_name": "orders", "workflow_name": "process_order", "app_version": version,
                                   "workflow_id": f"order-{uuid.uuid4().hex[:8]}-{n}"}
        ids.append(client.enqueue(options, options["workflow_id"], step_seconds).workflow_id)
    return ids


def eval_list(line: str) -> list[str]:
    import ast

    value = ast.literal_eval(line.strip())
    assert isinstance(value, list)
    return value


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_compose_fleet_hands_a_killed_workers_work_over(compose_fleet: ComposeFleet) -> None:
    workers = {w.env["DBOS__VMID"]: w for w in compose_fleet.by_kind("worker")}
    with DBOSClient(compose_fleet.db_url, redis_url=compose_fleet.redis_url) as client:
        ids = enqueue(client, 6, "v1", 1.0)

        def victim() -> Optional[tuple[str, str]]:
            compose_fleet.check_alive()
            rows = status_rows(compose_fleet.db_url, (
                "SELECT w.workflow_uuid, w.executor_id FROM dbos.workflow_status w WHERE w.status = 'PENDING' "
                "AND EXISTS (SELECT 1 FROM dbos.operation_outputs o WHERE o.workflow_uuid = w.workflow_uuid) "
                "ORDER BY w.workflow_uuid LIMIT 1"))
            return (str(rows[0][0]), str(rows[0][1])) if rows else None

        workflow_id, killed = eventually(victim, timeout=15, interval=0.05, what="(a workflow past its first step)")
        assert killed in workers, killed
        service = next(n for n, s in compose_fleet.services.items() if s is workers[killed])
        compose_fleet.kill(service)  # SIGKILL: its PENDING work stays owned by a dead executor

        def all_done() -> bool:
            compose_fleet.check_alive()
            sql = f"SELECT count(*) FROM dbos.workflow_status WHERE status = 'SUCCESS' AND workflow_uuid IN {tuple(ids)}"
            return bool(status_rows(compose_fleet.db_url, sql)[0][0] == len(ids))

        try:
            eventually(all_done, timeout=30, interval=0.1, what=f"(every order done after {killed} was killed)")
        except AssertionError as e:
            logs = "".join(f"--- {s.name}\n{s.log()[-3000:]}" for s in compose_fleet.by_kind("coordinator"))
            raise AssertionError(f"{e}\n{logs}") from None
        results = {w: client.retrieve_workflow(w).get_result() for w in ids}
        steps = results[workflow_id]
        assert steps[0] == f"reserve stock: {killed}", steps  # recorded before the kill, not run again
        assert steps[-1].split(": ")[1] in set(workers) - {killed}, steps
        final = status_rows(compose_fleet.db_url,
                            f"SELECT executor_id FROM dbos.workflow_status WHERE workflow_uuid = '{workflow_id}'")
        assert final[0][0] != killed
    logs = "".join(s.log() for s in compose_fleet.by_kind("coordinator"))
    assert f"executor {killed} (incarnation 1, version v1" in logs and "declared DEAD" in logs, logs[-3000:]
    assert f"of dead executor {killed}" in logs, logs[-3000:]


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_compose_fleet_launches_a_v2_worker_for_a_v2_fork(compose_fleet: ComposeFleet) -> None:
    vmids = {w.env["DBOS__VMID"] for w in compose_fleet.by_kind("worker")}
    with DBOSClient(compose_fleet.db_url, redis_url=compose_fleet.redis_url) as client:
        (original,) = enqueue(client, 1, "v1", 0.1)
        assert all(s.split(": ")[1] in vmids for s in client.retrieve_workflow(original).get_result())
        fork = client.fork_workflow(original, 2, application_version="v2")
        steps = fork.get_result()
        assert steps[0].split(": ")[1] in vmids, steps  # steps 1 and 2: v1's records
        launched = steps[-1].split(": ")[1]
        assert launched not in vmids, steps
    rows = status_rows(compose_fleet.db_url, (
        "SELECT e.app_version FROM dbos.workflow_status w JOIN dbos.executors e ON e.executor_id = w.executor_id "
        f"WHERE w.workflow_uuid = '{fork.workflow_id}'"))
    assert rows == [("v2",)], rows


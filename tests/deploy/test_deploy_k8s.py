"""deploy/k8s: the manifests agree with each other, the real CLI and the config loader."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from deploykit import DEPLOY, PORT, parse_run, port_of

from seedfl.core.config import parse_config

# -- kubernetes --------------------------------------------------------------------

def _k8s() -> dict[str, dict[str, Any]]:
    docs = [d for p in sorted((DEPLOY / "k8s").glob("*.yaml")) if p.name != "kustomization.yaml"
            for d in yaml.safe_load_all(p.read_text()) if d]
    by_kind = {d["kind"]: d for d in docs}
    assert sorted(by_kind) == ["ConfigMap", "Service", "StatefulSet"] and len(docs) == 3
    return by_kind


def _container_args(sts: dict[str, Any], namespace: str = "swarm") -> argparse.Namespace:
    container = sts["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    return parse_run([a.replace("$(POD_NAMESPACE)", namespace) for a in container["args"]])


def test_k8s_headless_service_matches_statefulset() -> None:
    k = _k8s()
    svc, sts = k["Service"], k["StatefulSet"]
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"]
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"]
    assert sts["spec"]["replicas"] == 3
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_k8s_container_args_ports_and_probes_agree() -> None:
    k = _k8s()
    svc, sts = k["Service"], k["StatefulSet"]
    pod = sts["spec"]["template"]["spec"]
    container = pod["containers"][0]
    args = _container_args(sts)
    port = port_of(args.listen)
    assert port == PORT == container["ports"][0]["containerPort"]
    assert svc["spec"]["ports"][0]["port"] == port
    assert svc["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == port, probe
    name, service = sts["metadata"]["name"], svc["metadata"]["name"]
    assert args.no_mdns
    assert args.peer == [f"{name}-{i}.{service}.swarm.svc.cluster.local:{port}"
                         for i in range(sts["spec"]["replicas"])]
    assert pod["terminationGracePeriodSeconds"] >= 60


def test_k8s_volumes_config_and_state() -> None:
    k = _k8s()
    sts, cm = k["StatefulSet"], k["ConfigMap"]
    pod = sts["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    args = _container_args(sts)
    claims = [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]]
    assert mounts[args.state_dir]["name"] in claims
    config = mounts[str(Path(args.config).parent)]
    assert config["readOnly"]
    assert volumes[config["name"]]["configMap"]["name"] == cm["metadata"]["name"]
    assert Path(args.config).name in cm["data"]
    assert mounts[str(Path(args.data).parent)]["readOnly"]
    assert pod["securityContext"]["runAsUser"] == pod["securityContext"]["fsGroup"] == 10001


def test_k8s_configmap_swarm_toml_loads() -> None:
    cfg = parse_config(_k8s()["ConfigMap"]["data"]["swarm.toml"], "configmap")
    assert cfg.model.name == "seedfl:smollm2-135m"
    assert dict(cfg.task.verbalizer) == {"0": " negative", "1": " positive"}
    assert cfg.task.template == "Review: {text}\nSentiment:"


def test_kustomization_lists_every_manifest() -> None:
    kust = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    files = {p.name for p in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kust["resources"]) == files
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return
    res = subprocess.run([kubectl, "kustomize", str(DEPLOY / "k8s")], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    built = {d["kind"] for d in yaml.safe_load_all(res.stdout) if d}
    assert built == {"ConfigMap", "Service", "StatefulSet"}

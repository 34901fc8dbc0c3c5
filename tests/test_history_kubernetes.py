"""The Kubernetes fleet manifests in deploy/kubernetes (issue 13): YAML, the fields the fleet relies on,
the deployment YAML in each ConfigMap loads with dcsaudit's own config loader, every {file:} reference
points into the mounted Secret, and (with kubernetes-validate installed) the Kubernetes schemas."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dcsaudit.config import load_config
from dcsaudit.suppressions import load_suppressions

K8S = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"


def _docs() -> list[dict[str, Any]]:
    docs = []
    for f in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(f.read_text()) if d]
    return docs


def _by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in _docs() if d.get("kind") == kind]


def test_every_file_is_in_the_kustomization_and_every_object_is_namespaced() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(f.name for f in K8S.glob("*.yaml")
                                                        if f.name != "kustomization.yaml")
    for d in _docs():
        if d["kind"] not in ("Kustomization", "Namespace"):
            assert d["metadata"]["namespace"] == "dcsaudit", d["metadata"]["name"]


def test_one_cronjob_per_segment_with_the_safety_settings() -> None:
    cronjobs = _by_kind("CronJob")
    assert len(cronjobs) >= 2
    configmaps = {c["metadata"]["name"]: c for c in _by_kind("ConfigMap")}
    secrets = {s["metadata"]["name"]: s for s in _by_kind("Secret")}
    used_configmaps = set()
    for cj in cronjobs:
        spec = cj["spec"]
        assert spec["concurrencyPolicy"] == "Forbid"
        job = spec["jobTemplate"]["spec"]
        assert job["backoffLimit"] == 0
        pod = job["template"]["spec"]
        assert pod["restartPolicy"] == "Never"
        sc = pod["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001 and sc["runAsGroup"] == 10001
        [container] = pod["containers"]
        csc = container["securityContext"]
        assert csc["readOnlyRootFilesystem"] is True and csc["allowPrivilegeEscalation"] is False
        assert csc["capabilities"]["drop"] == ["ALL"]
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert set(mounts) == set(volumes)
        # A read-only root needs writable /tmp and /out volumes
        assert {"/tmp", "/out"} <= {m["mountPath"] for m in mounts.values() if not m.get("readOnly")}
        # The deployment YAML comes from a ConfigMap, the store URL from a Secret through {file:}
        args = container["args"]
        assert args[0] == "scan"
        cm_mount = next(m for n, m in mounts.items() if "configMap" in volumes[n])
        cm_name = volumes[cm_mount["name"]]["configMap"]["name"]
        assert cm_name in configmaps and cm_name not in used_configmaps
        used_configmaps.add(cm_name)
        assert args[1] == f"{cm_mount['mountPath']}/deployment.yaml"
        secret_mount = next(m for n, m in mounts.items() if "secret" in volumes[n])
        secret = secrets[volumes[secret_mount["name"]]["secret"]["secretName"]]
        store = args[args.index("--store") + 1]
        m = re.fullmatch(r"\{file: (\S+)\}", store)
        assert m and m.group(1).startswith(secret_mount["mountPath"] + "/")
        assert m.group(1).rsplit("/", 1)[1] in secret["stringData"]
        assert secret["stringData"]["store-url"].startswith("postgresql+psycopg://")
        assert "--out-dir-per-run" in args


def test_configmap_deployments_load_and_reference_only_mounted_secrets(tmp_path: Path) -> None:
    secrets = _by_kind("Secret")[0]["stringData"]
    names = set()
    for cm in _by_kind("ConfigMap"):
        text = cm["data"]["deployment.yaml"]
        (tmp_path / "deployment.yaml").write_text(text)
        config = load_config(tmp_path / "deployment.yaml")  # dcsaudit's own validation (pydantic)
        names.add(config.deployment)
        for ref in re.findall(r"\{file: (\S+)\}", text):
            assert ref.startswith("/run/secrets/dcsaudit/") and ref.rsplit("/", 1)[1] in secrets
        assert "CHANGE-ME" not in text  # no secret value in a ConfigMap
        (tmp_path / "suppressions.yaml").write_text(cm["data"]["suppressions.yaml"])
        load_suppressions(tmp_path / "suppressions.yaml")
    assert len(names) == len(_by_kind("ConfigMap"))  # one deployment (one history) per segment


def test_manifests_validate_against_the_kubernetes_schemas() -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")
    for d in _docs():
        if d["kind"] == "Kustomization":
            continue
        kv.validate(d, "1.30.0", strict=True)

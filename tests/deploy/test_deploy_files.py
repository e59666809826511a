"""deploy/compose.yaml, deploy/seedfl.service and deploy/Dockerfile agree with the real CLI.

Every command line they hold is parsed by ``seedfl.cli.build_parser()`` (with
abbreviations off), so a renamed or removed flag fails here rather than in a
crash-looping container. Where ``docker compose`` or ``systemd-analyze`` exist,
their own offline validators run too; otherwise those tests skip.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploykit import DEPLOY, PORT, ROOT, STATE_DIR, parse_run, port_of

# -- compose ---------------------------------------------------------------------

def _check_compose_nodes(services: dict[str, Any], host_network: bool) -> list[argparse.Namespace]:
    assert sorted(services) == ["node1", "node2", "node3"]
    parsed = []
    for name, svc in services.items():
        assert (svc.get("network_mode") == "host") is host_network, name
        assert svc["restart"] == "unless-stopped"
        assert svc["image"] == "seedfl:local" and svc["build"]["dockerfile"] == "deploy/Dockerfile"
        args = parse_run(svc["command"])
        assert args.name == name and args.state_dir == STATE_DIR
        mounts = {v.split(":")[1]: v for v in svc["volumes"]}
        assert mounts[args.config].endswith(":ro") and mounts[args.data].endswith(":ro")
        assert mounts[STATE_DIR] == f"{name}-state:{STATE_DIR}"
        parsed.append(args)
    return parsed


def test_compose_three_host_network_nodes_with_own_ports_and_state() -> None:
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    parsed = _check_compose_nodes(doc["services"], host_network=True)
    assert sorted(port_of(a.listen) for a in parsed) == [PORT, PORT + 1, PORT + 2]
    assert all(not a.no_mdns and a.peer == [] for a in parsed)
    states = {v.split(":")[0] for svc in doc["services"].values() for v in svc["volumes"]
              if v.endswith(f":{STATE_DIR}")}
    assert states == {"node1-state", "node2-state", "node3-state"} <= set(doc["volumes"])
    # Same config and data for all three (one swarm).
    shared = {tuple(v for v in s["volumes"] if v.endswith(":ro")) for s in doc["services"].values()}
    assert len(shared) == 1
    assert doc["x-seedfl"]["stop_grace_period"] == "90s"


def test_compose_commented_static_peer_variant_parses() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    block = re.search(r"^# --- static peers.*?\n(.*?)^# --- end static peers", text,
                      re.S | re.M)
    assert block is not None
    body = "\n".join(line[2:] for line in block.group(1).splitlines()
                     if line.startswith("#   ") or line == "# services:")
    anchor = text.split("\nservices:")[0].replace("  network_mode: host\n", "")
    doc = yaml.safe_load(anchor + "\n" + body)
    parsed = _check_compose_nodes(doc["services"], host_network=False)
    for name, args in zip(doc["services"], parsed, strict=True):
        others = {f"{n}:{PORT}" for n in doc["services"] if n != name}
        assert args.no_mdns and set(args.peer) == others and port_of(args.listen) == PORT


def test_docker_compose_config_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"],
                                        capture_output=True).returncode != 0:
        pytest.skip("docker compose is not installed")
    res = subprocess.run([docker, "compose", "-f", str(DEPLOY / "compose.yaml"), "config",
                          "-q"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


# -- systemd -----------------------------------------------------------------------

UNIT_KEYS = {
    "Unit": {"Description", "Documentation", "Wants", "After", "Requires", "Before",
             "StartLimitIntervalSec", "StartLimitBurst"},
    "Service": {
        "Type", "User", "Group", "StateDirectory", "StateDirectoryMode", "CacheDirectory",
        "WorkingDirectory", "Environment", "EnvironmentFile", "ExecStart", "Restart",
        "RestartSec", "RestartPreventExitStatus", "KillSignal", "KillMode", "TimeoutStopSec",
        "TimeoutStartSec", "LimitNOFILE", "NoNewPrivileges", "ProtectSystem",
        "ReadWritePaths", "ProtectHome", "PrivateTmp", "PrivateDevices",
        "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
        "ProtectControlGroups", "ProtectClock", "ProtectHostname", "RestrictAddressFamilies",
        "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality",
        "CapabilityBoundingSet", "AmbientCapabilities", "SystemCallArchitectures",
        "SystemCallFilter", "UMask"},
    "Install": {"WantedBy"},
}


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file as ordered (key, value) lists; keys may repeat."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    lines = iter(text.splitlines())
    for raw in lines:
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        while line.endswith("\\"):
            line = line[:-1] + " " + next(lines).strip()
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"not a key=value line: {raw!r}"
        current.append((key.strip(), value.strip()))
    return sections


def _unit() -> tuple[dict[str, list[tuple[str, str]]], dict[str, str]]:
    sections = parse_unit((DEPLOY / "seedfl.service").read_text())
    return sections, dict(sections["Service"])


def test_systemd_unit_uses_only_known_keys() -> None:
    sections, _ = _unit()
    assert set(sections) == set(UNIT_KEYS)
    for name, pairs in sections.items():
        assert {k for k, _ in pairs} <= UNIT_KEYS[name], name


def test_systemd_unit_restart_limits_state_and_stop() -> None:
    _, svc = _unit()
    assert svc["Type"] in ("simple", "exec") and svc["User"] == "seedfl"
    assert svc["Restart"] == "on-failure" and svc["RestartSec"] == "5s"
    assert svc["RestartPreventExitStatus"] == "2"  # usage errors do not heal
    assert svc["LimitNOFILE"] == "65536"
    assert svc["StateDirectory"] == "seedfl" and svc["WorkingDirectory"] == STATE_DIR
    assert svc["KillSignal"] == "SIGTERM" and int(svc["TimeoutStopSec"].rstrip("s")) >= 60
    assert svc["NoNewPrivileges"] == "yes" and svc["ProtectSystem"] == "strict"
    assert STATE_DIR in svc["ReadWritePaths"].split()


def test_systemd_exec_start_parses_with_and_without_extra_args() -> None:
    sections, svc = _unit()
    env = dict(v.split("=", 1) for k, v in sections["Service"] if k == "Environment")
    assert env["SEEDFL_RUN_ARGS"] == ""
    argv = shlex.split(svc["ExecStart"])
    assert argv[0] == "/opt/seedfl/bin/seedfl" and argv[-1] == "$SEEDFL_RUN_ARGS"
    # systemd splits an unquoted $VAR into words; empty gives no word at all.
    args = parse_run(argv[1:-1])
    assert args.state_dir == STATE_DIR and port_of(args.listen) == PORT
    extra = ["--no-mdns", "--peer", "10.0.0.12:7440", "--peer", "10.0.0.13:7440"]
    args = parse_run(argv[1:-1] + extra)
    assert args.no_mdns and args.peer == ["10.0.0.12:7440", "10.0.0.13:7440"]


def test_systemd_analyze_verify_reports_nothing(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    # verify insists that ExecStart's program exists; point it at this venv's.
    seedfl = shutil.which("seedfl") or str(ROOT / ".venv" / "bin" / "seedfl")
    unit = tmp_path / "seedfl.service"
    unit.write_text((DEPLOY / "seedfl.service").read_text()
                    .replace("/opt/seedfl/bin/seedfl", seedfl))
    res = subprocess.run([tool, "verify", "--man=no", str(unit)], capture_output=True,
                         text=True, timeout=60)
    ours = [line for line in (res.stdout + res.stderr).splitlines() if str(unit) in line]
    assert res.returncode == 0 and ours == [], res.stdout + res.stderr


# -- Dockerfile --------------------------------------------------------------------

def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending += line
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        word, _, rest = pending.partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    return out


def test_dockerfile_pins_torch_through_constraints_and_runs_seedfl() -> None:
    steps = dockerfile_instructions((DEPLOY / "Dockerfile").read_text())

    def of(kind: str) -> list[str]:
        return [arg for k, arg in steps if k == kind]

    pin = re.search(r"^torch==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M)
    assert pin is not None
    assert all(f.startswith("python:3.12-slim") for f in of("FROM"))
    assert "constraints.txt ./" in of("COPY")
    runs = of("RUN")
    assert any(f"-c constraints.txt torch=={pin.group(1)}" in r for r in runs)
    assert any('pip install -c constraints.txt ".[demo]"' in r for r in runs)
    assert all("pip install" not in r or "-c constraints.txt" in r for r in runs)
    assert of("USER") == ["seedfl"]
    assert of("VOLUME") == [f'["{STATE_DIR}"]'] and of("EXPOSE") == [str(PORT)]
    assert of("ENTRYPOINT") == ['["seedfl"]']
    assert "seedfl status" in of("HEALTHCHECK")[0]
    env = " ".join(of("ENV"))
    assert f"SEEDFL_STATE_DIR={STATE_DIR}" in env and f"SEEDFL_LISTEN=0.0.0.0:{PORT}" in env
    assert parse_run(yaml.safe_load(of("CMD")[0])).command == "run"


def test_dockerfile_env_gives_the_cli_its_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = dockerfile_instructions((DEPLOY / "Dockerfile").read_text())
    env = dict(pair.split("=", 1) for k, arg in steps if k == "ENV" for pair in arg.split())
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cmd = yaml.safe_load(next(arg for k, arg in steps if k == "CMD"))
    args = parse_run(cmd)  # `docker run seedfl:local` with no arguments
    assert args.config == "/etc/seedfl/swarm.toml" and args.state_dir == STATE_DIR
    assert port_of(args.listen) == PORT and args.data is None


def test_dockerignore_lets_every_copied_path_in() -> None:
    steps = dockerfile_instructions((DEPLOY / "Dockerfile").read_text())
    kept = {line[1:] for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
            if line.startswith("!")}
    copied = {src for k, arg in steps if k == "COPY" and not arg.startswith("--from")
              for src in arg.split()[:-1]}
    assert copied == kept

"""`python -m devstack`: the JSON document and loopback-only listeners."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from devstack import Stack
from devstack.airflow import AirflowServer
from tests.conftest import KafkaCluster

LISTEN = "0A"


def test_up_prints_how_to_reach_the_stack(
    kafka: KafkaCluster, airflow3: AirflowServer, airflow2: AirflowServer
) -> None:
    """`up --json` on a running stack prints the documented JSON shape with both Airflows."""
    done = subprocess.run(
        [sys.executable, "-m", "devstack", "up", "--airflow", "both", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    doc = json.loads(done.stdout)
    assert doc["kafka"] == {"bootstrap_servers": kafka.bootstrap_servers}
    for major, server in (("3", airflow3), ("2", airflow2)):
        assert doc["airflow"][major]["url"] == server.url
        assert doc["airflow"][major]["username"] == "admin"
        assert doc["airflow"][major]["password"]


def _listening_inodes() -> dict[str, str]:
    """Inode -> local address of every listening TCP socket (from /proc/net/tcp{,6})."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == LISTEN:
                found[fields[9]] = fields[1]
    return found


def _is_loopback(address: str) -> bool:
    host = address.split(":", maxsplit=1)[0]
    if host.startswith("0000000000000000FFFF0000"):  # IPv4-mapped IPv6 (a JVM's dual socket)
        host = host[-8:]
    if len(host) == 8:  # IPv4, little-endian hex: 127.x.x.x ends in 7F
        return host.endswith("7F")
    return host == "00000000000000000000000001000000"  # ::1


def _stack_pids(stack: Stack) -> set[int]:
    groups = {server.pid for server in (stack.kafka, stack.postgres) if server and server.pid}
    for server in stack.airflow.values():
        groups.update(server.pids.values())
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) in groups:
                    pids.add(int(entry.name))
            except ProcessLookupError:
                continue
    return pids


def test_no_server_listens_outside_loopback(
    stack: Stack, kafka: KafkaCluster, airflow3: AirflowServer, airflow2: AirflowServer
) -> None:
    """Every listening socket of every stack process is bound to a loopback address."""
    listening = _listening_inodes()
    exposed = []
    checked = 0
    for pid in _stack_pids(stack):
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except (FileNotFoundError, PermissionError):
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            inode = target.removeprefix("socket:[").removesuffix("]")
            if target.startswith("socket:") and inode in listening:
                checked += 1
                if not _is_loopback(listening[inode]):
                    exposed.append((pid, listening[inode]))
    assert checked >= 4  # Kafka (2), PostgreSQL, two API servers at least
    assert exposed == []


def test_every_recorded_server_is_alive(
    stack: Stack, kafka: KafkaCluster, airflow3: AirflowServer, airflow2: AirflowServer
) -> None:
    """After `up`, each pid in the state file is a running server of this stack."""
    from devstack import procs  # noqa: PLC0415 -- only this test needs it

    stack.up(kafka=True, airflow=("3", "2"))
    recorded = {"kafka": stack.kafka.pid if stack.kafka else None}
    recorded["postgres"] = stack.postgres.pid if stack.postgres else None
    for major, server in stack.airflow.items():
        recorded.update({f"airflow{major} {role}": pid for role, pid in server.pids.items()})
    dead = {name: pid for name, pid in recorded.items() if pid is None or not procs.alive(pid)}
    assert dead == {}

"""Start the real ``dagster dev`` (webserver + daemon + code server) on 127.0.0.1 for a test, talk to it over
GraphQL the way the UI does, and stop exactly the processes this module started."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOCATION = "video_assets.definitions"
REPOSITORY = "__repository__"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DagsterDev:
    def __init__(self, url: str, proc: subprocess.Popen, log_path: Path):
        self.url, self.proc, self.log_path = url, proc, log_path

    def gql(self, query: str, variables: dict | None = None, timeout: float = 30) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(f"{self.url}/graphql", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            out = json.loads(r.read())
        if out.get("errors"):
            raise RuntimeError(f"GraphQL errors: {out['errors']}")
        return out["data"]

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def wait_loaded(self, timeout: float = 120) -> None:
        """Until the webserver answers and the code location has loaded (or failed)."""
        q = """{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
                 locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dagster dev exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                entries = self.gql(q, timeout=5)["workspaceOrError"]["locationEntries"]
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.5)
                continue
            entry = next((e for e in entries if e["name"] == LOCATION), None)
            if entry and entry["loadStatus"] == "LOADED":
                err = entry["locationOrLoadError"]
                if err and err["__typename"] == "PythonError":
                    raise RuntimeError(f"code location failed to load: {err['message']}")
                return
            time.sleep(0.5)
        raise TimeoutError(f"dagster dev did not load {LOCATION} in {timeout:.0f}s:\n{self.log_tail()}")

    def add_partition(self, partitions_def: str, key: str) -> None:
        q = """mutation($r: RepositorySelector!, $p: String!, $k: String!) {
                 addDynamicPartition(repositorySelector: $r, partitionsDefName: $p, partitionKey: $k) {
                   __typename ... on PythonError { message } } }"""
        res = self.gql(q, {"r": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY},
                           "p": partitions_def, "k": key})["addDynamicPartition"]
        assert res["__typename"] in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"), res

    def asset_checks(self, asset_paths: list[list[str]]) -> list[dict]:
        q = """{ assetNodes { assetKey { path } assetChecksOrError { __typename
                 ... on AssetChecks { checks { name } } } } }"""
        out = []
        for node in self.gql(q)["assetNodes"]:
            checks = node["assetChecksOrError"]
            if node["assetKey"]["path"] in asset_paths and checks["__typename"] == "AssetChecks":
                out += [{"assetKey": {"path": node["assetKey"]["path"]}, "name": c["name"]}
                        for c in checks["checks"]]
        return out

    def materialize(self, asset_paths: list[list[str]], partition_key: str) -> str:
        """What the UI's Materialize button sends for a partition: LaunchPipelineExecution on __ASSET_JOB
        with an assetSelection (and the assets' checks), the partition as a tag. Returns the run id."""
        q = """mutation LaunchPipelineExecution($executionParams: ExecutionParams!) {
                 launchPipelineExecution(executionParams: $executionParams) { __typename
                   ... on LaunchRunSuccess { run { runId } }
                   ... on PythonError { message stack }
                   ... on RunConfigValidationInvalid { errors { message } }
                   ... on InvalidSubsetError { message }
                   ... on PipelineNotFoundError { message } } }"""
        params = {
            "selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY,
                         "pipelineName": "__ASSET_JOB", "assetSelection": [{"path": p} for p in asset_paths],
                         "assetCheckSelection": self.asset_checks(asset_paths)},
            "runConfigData": "{}",
            "mode": "default",
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition_key}]},
        }
        res = self.gql(q, {"executionParams": params})["launchPipelineExecution"]
        assert res["__typename"] == "LaunchRunSuccess", res
        return res["run"]["runId"]

    def run_status(self, run_id: str) -> str:
        q = """query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }"""
        return self.gql(q, {"id": run_id})["runOrError"]["status"]

    def wait_run(self, run_id: str, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.run_status(run_id)
            if status in ("SUCCESS", "FAILURE", "CANCELED"):
                return status
            time.sleep(1)
        raise TimeoutError(f"run {run_id} not finished in {timeout:.0f}s:\n{self.log_tail()}")

    def runs(self, tags: dict[str, str]) -> list[dict]:
        q = """query($f: RunsFilter) { runsOrError(filter: $f) { __typename ... on Runs { results {
                 runId status tags { key value } } } } }"""
        f = {"tags": [{"key": k, "value": v} for k, v in tags.items()]}
        res = self.gql(q, {"f": f})["runsOrError"]
        return [{"runId": r["runId"], "status": r["status"],
                 "tags": {t["key"]: t["value"] for t in r["tags"]}} for r in res["results"]]

    def run_failure_messages(self, run_id: str) -> str:
        q = """query($id: ID!) { logsForRun(runId: $id) { __typename ... on EventConnection { events {
                 __typename ... on MessageEvent { message }
                 ... on ExecutionStepFailureEvent { error { message } }
               } } } }"""
        events = self.gql(q, {"id": run_id})["logsForRun"].get("events", [])
        return "\n".join((e.get("error") or {}).get("message") or e.get("message") or ""
                         for e in events[-30:])


@contextmanager
def dagster_dev(home: Path, env: dict[str, str], port: int | None = None,
                dagster_yaml: Path = REPO / "dagster_home" / "dagster.yaml") -> Iterator[DagsterDev]:
    """Run ``dagster dev -w workspace.yaml -h 127.0.0.1 -p PORT`` with DAGSTER_HOME=home (the project's
    dagster.yaml copied in). The process group it creates is terminated (SIGTERM, then SIGKILL after 30 s)."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(dagster_yaml, home / "dagster.yaml")
    port = port or free_port()
    log_path = home / "dagster_dev.log"
    full_env = {**os.environ, **env, "DAGSTER_HOME": str(home)}
    exe = str(Path(sys.executable).with_name("dagster"))
    with open(log_path, "wb") as log:
        cmd = [exe, "dev", "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)]
        proc = subprocess.Popen(cmd, cwd=str(REPO), env=full_env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    server = DagsterDev(f"http://127.0.0.1:{port}", proc, log_path)
    try:
        yield server
    finally:
        stop_process_group(proc)


def stop_process_group(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM the group this module created (its id is the child's pid), wait, then SIGKILL it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # children still alive in the group (code server, run workers)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass

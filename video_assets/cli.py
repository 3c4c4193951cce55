"""``python -m video_assets``: small commands for scripts, so that none needs Dagster's private API.

``add-manifest PATH [--launch | --url URL]`` registers a manifest (local path or s3://) in the warehouse's
manifest registry, adds its partition to the Dagster instance and prints the partition key; ``--launch`` then
runs the job for that partition in this process (recorded in the instance, so the UI shows it), ``--url`` asks
a running ``dagster dev`` / webserver to launch it instead (GraphQL: ``addDynamicPartition``, then
``DagsterGraphQLClient.submit_job_execution``).

The instance: ``$DAGSTER_HOME`` when set, else the repository's ``dagster_home/`` (what ``make dev`` uses), so
``make demo``, this command and the UI share runs, partitions and materialisations.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dagster as dg

REPO_DAGSTER_HOME = Path(__file__).resolve().parent.parent / "dagster_home"
JOB_NAME = "video_assets_job"
LOCATION = "video_assets.definitions"  # the code location's name in workspace.yaml's dagster dev


def project_instance() -> dg.DagsterInstance:
    """The Dagster instance of ``$DAGSTER_HOME``, else of the repository's ``dagster_home/`` (``make dev``'s
    instance; ``DAGSTER_HOME`` is then set for this process)."""
    import dagster as dg

    if not os.environ.get("DAGSTER_HOME"):
        if not (REPO_DAGSTER_HOME / "dagster.yaml").exists():
            raise SystemExit(f"error: DAGSTER_HOME is not set and {REPO_DAGSTER_HOME} has no dagster.yaml; "
                             "set DAGSTER_HOME to the instance folder that `dagster dev` uses")
        os.environ["DAGSTER_HOME"] = str(REPO_DAGSTER_HOME)
    return dg.DagsterInstance.get()


def add_partition(instance: dg.DagsterInstance, key: str) -> bool:
    """Add ``key`` to the ``video_manifests`` partitions; False when it was there already."""
    from video_assets.orchestration.partitions import PARTITIONS_NAME

    if instance.has_dynamic_partition(PARTITIONS_NAME, key):
        return False
    instance.add_dynamic_partitions(PARTITIONS_NAME, [key])
    return True


def run_partition(instance: dg.DagsterInstance, key: str, resources: dict | None = None,
                  run_config: dict | None = None) -> dg.ExecuteInProcessResult:
    """Run ``video_assets_job`` (the four assets and their checks) for partition ``key`` in this process,
    recorded in ``instance``; ``resources`` override the defaults from the environment."""
    import dagster as dg

    from video_assets.orchestration.assets import ASSETS
    from video_assets.orchestration.jobs import video_assets_job
    from video_assets.orchestration.resources import default_resources

    defs = dg.Definitions(assets=ASSETS, jobs=[video_assets_job], executor=dg.in_process_executor,
                          resources=default_resources(**(resources or {})))
    return defs.resolve_job_def(JOB_NAME).execute_in_process(instance=instance, partition_key=key,
                                                             run_config=run_config, raise_on_error=False)


def _gql(url: str, query: str, variables: dict) -> dict:
    req = urllib.request.Request(f"{url.rstrip('/')}/graphql", headers={"Content-Type": "application/json"},
                                 data=json.dumps({"query": query, "variables": variables}).encode())
    with urllib.request.urlopen(req, timeout=30) as r:
        out = json.loads(r.read())
    if out.get("errors"):
        raise RuntimeError(f"GraphQL errors: {out['errors']}")
    return out["data"]


def launch_remote(url: str, key: str) -> str:
    """Add partition ``key`` on the server at ``url`` and launch the job for it; returns the run id."""
    from urllib.parse import urlsplit

    from dagster_graphql import DagsterGraphQLClient

    from video_assets.orchestration.partitions import PARTITIONS_NAME

    res = _gql(url, """mutation($r: RepositorySelector!, $p: String!, $k: String!) {
                 addDynamicPartition(repositorySelector: $r, partitionsDefName: $p, partitionKey: $k) {
                   __typename ... on PythonError { message } ... on UnauthorizedError { message } } }""",
               {"r": {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"},
                "p": PARTITIONS_NAME, "k": key})["addDynamicPartition"]
    if res["__typename"] not in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"):
        raise RuntimeError(f"{url}: cannot add partition {key!r}: {res.get('message') or res['__typename']}")
    parts = urlsplit(url)
    client = DagsterGraphQLClient(parts.hostname, port_number=parts.port, use_https=parts.scheme == "https")
    return client.submit_job_execution(JOB_NAME, repository_location_name=LOCATION,
                                       repository_name="__repository__", tags={"dagster/partition": key})


def print_result(result: dg.ExecuteInProcessResult) -> None:
    import dagster as dg

    for ev in result.all_events:
        if ev.is_step_failure:
            err = ev.event_specific_data.error
            print(f"step {ev.step_key} failed: {err.message.strip() if err else ''}", file=sys.stderr)
    print("asset checks:")
    for c in result.get_asset_check_evaluations():
        warn = c.severity == dg.AssetCheckSeverity.WARN
        state = "passed" if c.passed else ("WARNING" if warn else "FAILED")
        desc = (c.description or "").strip()
        print(f"  {c.asset_key.to_user_string()}.{c.check_name}: {state}" + (f" ({desc})" if desc else ""))


def add_manifest(args: argparse.Namespace) -> int:
    from video_assets.orchestration.resources import WarehouseResource
    from video_assets.pipeline.manifests import ManifestError

    warehouse = WarehouseResource.from_env()
    try:
        key, changed = warehouse.registry().register_file(args.path)
    except ManifestError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.path} -> partition {key!r} ({'registered' if changed else 'already registered'}; "
          f"warehouse {warehouse.warehouse_uri})")
    if args.url:
        run_id = launch_remote(args.url, key)
        print(f"run {run_id} launched on {args.url} ({args.url.rstrip('/')}/runs/{run_id})")
        return 0
    instance = project_instance()
    added = add_partition(instance, key)
    state = "added to" if added else "already in"
    print(f"partition {key!r} {state} the instance at {instance.root_directory}")
    if not args.launch:
        print(f"materialise it: in the UI (make dev), with --launch, or\n"
              f"  DAGSTER_HOME={instance.root_directory} dagster asset materialize "
              f"-m video_assets.definitions --select '*' --partition {key}")
        return 0
    # the run's own events are in the instance (the UI); here only warnings, such as why most videos failed
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    result = run_partition(instance, key, run_config=quiet)
    print(f"run {result.run_id}: {'SUCCESS' if result.success else 'FAILURE'}")
    print_result(result)
    return 0 if result.success else 1


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m video_assets", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add-manifest", help="register a manifest as a partition (and optionally launch it)")
    add.add_argument("path", help="manifest: a local path or s3:// URI (.csv, .jsonl, .parquet, .txt, ...)")
    how = add.add_mutually_exclusive_group()
    how.add_argument("--launch", action="store_true",
                     help="run the job for the partition in this process, recorded in the instance")
    how.add_argument("--url", help="launch on a running webserver instead, e.g. http://127.0.0.1:3000")
    args = ap.parse_args(argv)
    return {"add-manifest": add_manifest}[args.command](args)

"""quantflow.orchestration.deploy without a server: deployments and prefect.yaml from a spec."""

from __future__ import annotations

import io
import socket
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from quantflow.core.specload import load_spec
from quantflow.orchestration import deploy
from tests.tiny import tiny_spec, write_workspace

ROOT = Path(__file__).resolve().parents[1]
CRON = {"cron": "0 3 * * 1", "timezone": "Europe/Paris"}


def _deployment(tmp_path: Path, **pipeline_updates: object):
    path = write_workspace(tmp_path / "ws", tiny_spec(**pipeline_updates))
    return deploy.build_deployment(load_spec(path).spec, path, "tiny", "pool-a")


def test_cron_schedule_is_carried(tmp_path: Path) -> None:
    (s,) = _deployment(tmp_path, schedule=CRON).schedules
    assert (s.schedule.cron, s.schedule.timezone) == ("0 3 * * 1", "Europe/Paris")
    assert s.active


def test_interval_schedule_keeps_its_grid_across_deploys(tmp_path: Path) -> None:
    first = _deployment(tmp_path, schedule={"interval_seconds": 3600}).schedules
    again = _deployment(tmp_path, schedule={"interval_seconds": 3600}).schedules
    assert first[0].schedule.interval == timedelta(hours=1)
    assert first[0].schedule.anchor_date == deploy.INTERVAL_ANCHOR
    assert first[0].schedule == again[0].schedule


def test_no_schedule_is_sent_so_an_update_removes_the_old_one(tmp_path: Path) -> None:
    d = _deployment(tmp_path)
    assert d.schedules == []
    # The server replaces a deployment's schedules whenever the update carries the field.
    assert d.model_dump(mode="json", exclude_unset=True, exclude={"storage"})["schedules"] == []


def test_parameters_pool_concurrency_and_source(tmp_path: Path) -> None:
    d = _deployment(tmp_path, schedule=CRON)
    ws = str((tmp_path / "ws").resolve())
    assert (d.name, d.flow_name, d.work_pool_name) == ("tiny", "quantize-pipeline", "pool-a")
    # Only the target: a trigger's `options` is a separate top-level parameter, so Prefect's
    # merge by top-level name keeps these defaults.
    assert d.parameters == {"target": {"pipeline": "tiny", "spec_file": "pipelines.yaml",
                                       "workspace": ws}}
    assert d.concurrency_limit == 1
    assert d.concurrency_options.collision_strategy.value == "ENQUEUE"
    assert d.storage.to_pull_step() == {
        "prefect.deployments.steps.set_working_directory": {"directory": ws}}
    # The workspace is outside the project, so the flow file is named absolutely.
    assert d.entrypoint == f"{ROOT / 'flows' / 'quantize.py'}:quantize_pipeline"
    assert d.enforce_parameter_schema


def test_entrypoint_is_relative_inside_the_project() -> None:
    spec = load_spec(ROOT / "pipelines.yaml").spec
    name = next(iter(spec.pipelines))
    d = deploy.build_deployment(spec, ROOT / "pipelines.yaml", name, "quantflow")
    assert d.entrypoint == "flows/quantize.py:quantize_pipeline"


def test_the_parameter_schema_accepts_the_defaults_and_names_a_bad_field(tmp_path: Path) -> None:
    """What the server checks (enforce_parameter_schema) before a run is even created."""
    from prefect.utilities.schema_tools import ValidationError, validate

    d = _deployment(tmp_path)
    schema = d._parameter_openapi_schema.model_dump(exclude_unset=True)
    validate(d.parameters, schema, raise_on_error=True)
    validate({**d.parameters, "options": {"overrides": ["train.epochs=3"], "force": True}},
             schema, raise_on_error=True)
    bad = {**d.parameters, "options": {"overrides": "train.epochs=3"}}
    with pytest.raises(ValidationError, match="overrides"):
        validate(bad, schema, raise_on_error=True)
    typo = {**d.parameters, "options": {"overides": ["train.epochs=3"]}}
    with pytest.raises(ValidationError, match="overides"):
        validate(typo, schema, raise_on_error=True)
    with pytest.raises(ValidationError, match="target"):
        validate({"options": {}}, schema, raise_on_error=True)


def test_committed_prefect_yaml_is_generated_from_pipelines_yaml() -> None:
    spec = load_spec(ROOT / "pipelines.yaml").spec
    expected = deploy.prefect_yaml(spec, "pipelines.yaml")
    assert (ROOT / "prefect.yaml").read_text() == expected, (
        "prefect.yaml is stale: regenerate it with `quantflow deploy --prefect-yaml`")


def test_cli_writes_prefect_yaml_beside_the_spec(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from quantflow.cli import app

    path = write_workspace(tmp_path / "ws", tiny_spec(schedule=CRON))
    done = CliRunner().invoke(app, ["deploy", "--prefect-yaml", "--spec", str(path),
                                    "--pool", "pool-a"])
    assert done.exit_code == 0, done.output
    expected = deploy.prefect_yaml(load_spec(path).spec, "pipelines.yaml", "pool-a",
                                   workspace=path.parent)
    assert (path.parent / "prefect.yaml").read_text() == expected
    done = CliRunner().invoke(app, ["deploy", "tiny", "--prefect-yaml", "--spec", str(path)])
    assert done.exit_code == 2 and "name none" in done.output


@pytest.mark.parametrize("schedule", [CRON, {"interval_seconds": 900}, None])
def test_prefect_yaml_describes_the_same_deployment(tmp_path: Path, schedule: dict | None) -> None:
    """Read prefect.yaml the way `prefect deploy` does and compare with `quantflow deploy`."""
    from prefect.cli.deploy._schedules import _schedule_config_to_deployment_schedule

    d = _deployment(tmp_path, schedule=schedule)
    path = tmp_path / "ws" / "pipelines.yaml"
    doc = yaml.safe_load(deploy.prefect_yaml(load_spec(path).spec, "pipelines.yaml", "pool-a",
                                             workspace=path.parent))
    (entry,) = doc["deployments"]
    assert entry["entrypoint"] == d.entrypoint  # absolute: this workspace is not the project
    assert entry["work_pool"] == {"name": "pool-a"}
    assert entry["concurrency_limit"] == {"limit": d.concurrency_limit,
                                          "collision_strategy": "ENQUEUE"}
    here = "{{ workspace.stdout }}"
    assert entry["parameters"] == {"target": {**d.parameters["target"], "workspace": here}}
    assert doc["pull"] == [{"prefect.deployments.steps.set_working_directory":
                            {"directory": here}}]
    from_yaml = [_schedule_config_to_deployment_schedule(s)["schedule"]
                 for s in entry["schedules"]]
    assert from_yaml == [s.schedule for s in d.schedules]


def _console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=200), buf


def test_deploy_names_unknown_pipelines_and_a_missing_server(tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    path = write_workspace(tmp_path / "ws", tiny_spec())
    spec = load_spec(path).spec
    console, out = _console()
    assert deploy.deploy_pipelines(spec, path, ["tiny", "nope"], "p", console) == 2
    assert "nope" in out.getvalue()
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/api"
    with temporary_settings({PREFECT_API_URL: url}):
        assert deploy.deploy_pipelines(spec, path, [], "p", console) == 1
    assert f"cannot deploy: no Prefect API at {url}" in out.getvalue()


def test_serve_refuses_a_busy_port() -> None:
    console, out = _console()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert deploy.serve(s.getsockname()[1], "p", console) == 1
    assert "is in use" in out.getvalue()

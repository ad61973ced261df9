"""What the driver's environment gives Ray workers: storage endpoint and settings, never credentials."""

from __future__ import annotations

import pytest

from raysegment.runtime import task_runtime_env, worker_env


def test_worker_env_carries_endpoint_and_settings_but_no_secrets(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://minio:9000")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("RAYSEGMENT_S3_RETRIES", "7")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-for-the-dashboard")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "nor-this")
    env = worker_env()
    assert env["AWS_ENDPOINT_URL_S3"] == "http://minio:9000" and env["AWS_REGION"] == "eu-west-1"
    assert env["RAYSEGMENT_S3_RETRIES"] == "7"
    assert not any(key.startswith(("AWS_SECRET", "AWS_ACCESS", "AWS_SESSION")) for key in env)


def test_worker_env_carries_the_storage_config_set_by_the_cli_alone(monkeypatch):
    from raysegment import storage, storage_config

    monkeypatch.setattr(storage_config, "_overrides", {})
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "not-for-the-dashboard")
    storage.configure(endpoint_url="http://minio:9000", max_attempts=8)  # --s3-endpoint, and a retry setting
    env = worker_env()
    assert env["RAYSEGMENT_S3_ENDPOINT_URL"] == "http://minio:9000" and env["RAYSEGMENT_S3_MAX_ATTEMPTS"] == "8"
    assert env["RAYSEGMENT_S3_REGION"] == ""  # none on the driver: every worker resolves each bucket's region too
    assert "not-for-the-dashboard" not in env.values()


def test_tasks_get_a_runtime_env_only_when_settings_changed_after_init(ray_session, monkeypatch):
    # The session's Ray started with this process's worker_env(): no separate worker pool needed.
    assert task_runtime_env() is None
    monkeypatch.setenv("RAYSEGMENT_LATE_SETTING", "1")
    assert task_runtime_env() == {"env_vars": worker_env()}
    assert task_runtime_env()["env_vars"]["RAYSEGMENT_LATE_SETTING"] == "1"


def test_requests_a_local_instance_cannot_meet_fail_at_once(ray_session):
    """A local Ray instance never grows: a GPU asked for on a CPU machine is a one-line error, not a wait."""
    from raysegment.errors import ConfigError
    from raysegment.runtime import check_local_request, local_resources

    assert local_resources()["CPU"] == 2
    check_local_request(None, {"CPU": 2, "GPU": 0}, "--workers 2")
    with pytest.raises(ConfigError, match=r"^--gpus-per-worker 1 asks for 1 GPU but .* has 0; .*--address"):
        check_local_request(None, {"GPU": 1}, "--gpus-per-worker 1")
    # A cluster is not checked: its autoscaler may be about to add the GPU nodes.
    assert local_resources("ray://head:10001") is None
    check_local_request("ray://head:10001", {"GPU": 8}, "--gpus-per-worker 4")



def test_a_quiet_start_prints_none_of_rays_start_up_notices_and_verbose_shows_them(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from raysegment.runtime import init_ray; init_ray(num_cpus=1, verbose=sys.argv[1] == 'v'); import ray.data; "
            "ray.data.DataContext.get_current().enable_progress_bars = False; print(ray.data.range(3).count())")
    notices = ("logging.cc", "Set ray log level", "Token authentication is enabled", "Progress bars disabled")
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("RAY_ADDRESS", "RAY_BACKEND_LOG_LEVEL", "RAY_AUTH_MODE")}
    quiet = subprocess.run([sys.executable, "-c", code, "q"], capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stdout.strip() == "3", quiet.stderr
    assert not [n for n in notices if n in quiet.stderr], quiet.stderr
    verbose = subprocess.run([sys.executable, "-c", code, "v"], capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert "Token authentication is enabled" in verbose.stderr  # hidden, not lost: --verbose shows Ray's own lines

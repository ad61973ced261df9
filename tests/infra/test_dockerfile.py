"""infra/Dockerfile: GPU base, non-root, installs raysegment with the extras jobs/ need, no secrets; same tag as the docs and configs."""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "infra" / "Dockerfile"
SECRET_NAME = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL)", re.I)


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    joined, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            joined.append(current.strip())
            current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in joined]


def _args(instruction: str) -> list[str]:
    return [args for name, args in _instructions() if name == instruction]


def _pyproject(pattern: str) -> re.Match:
    # A regex rather than tomllib, which Python 3.10 (still supported) lacks.
    match = re.search(pattern, (REPO / "pyproject.toml").read_text(), re.M)
    assert match, pattern
    return match


def _extras() -> set[str]:
    """The names of pyproject's optional dependencies."""
    block = _pyproject(r"^\[project\.optional-dependencies\]\n((?:[^\[\n].*\n|\n)*)").group(1)
    return set(re.findall(r"^([\w-]+) = \[", block, re.M))


def _installed_extras() -> set[str]:
    """The extras of the repository itself (``.[a,b]``) in the image's pip install line."""
    found = [m.group(1) or "" for m in re.finditer(r'pip install [^&]*?\s"?\.(?:\[([\w,-]+)\])?"?(?=\s|$)', " ".join(_args("RUN")))]
    assert found, "the image does not pip install the repository"
    return {e for extras in found for e in extras.split(",") if e}


#: Job-file settings whose code path imports an optional dependency, and the extra that provides it.
EXTRA_FOR_SETTING = {
    "search": ("optuna", lambda value: value == "optuna"),
    "tracking.mlflow_uri": ("mlflow", bool),
}


def _needed_extras(job: dict, prefix: str = "") -> set[str]:
    needed = set()
    for key, value in job.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            needed |= _needed_extras(value, dotted + ".")
        for setting, (extra, uses_it) in EXTRA_FOR_SETTING.items():
            # Tune jobs nest a training job under `train:`, so a setting may sit below any prefix.
            if (dotted == setting or dotted.endswith("." + setting)) and uses_it(value):
                needed.add(extra)
    return needed


def _image_tag() -> str:
    readme = (REPO / "infra" / "README.md").read_text()
    (tag,) = re.findall(r"docker build -f infra/Dockerfile -t (\S+) \.", readme)
    return tag


def test_gpu_base_image():
    (base,) = _args("FROM")
    assert re.fullmatch(r"(nvidia/cuda:12\.\d+\.\d+-\S*ubuntu\S+|rayproject/ray:2\.60\.0-py3\d+-cu\d+)", base), base


def test_runs_as_a_non_root_user():
    users = _args("USER")
    assert users and users[-1] not in ("root", "0")
    created = re.search(r"useradd .*--uid (\d+) .*\b" + re.escape(users[-1]) + r"\b", " ".join(_args("RUN")))
    assert created and int(created.group(1)) != 0


def test_image_declares_the_users_home():
    # `ray up` maps "~/" file mounts (the auth token) to the image's HOME; the default is /root.
    user = _args("USER")[-1]
    assert f"HOME=/home/{user}" in " ".join(_args("ENV"))
    assert re.search(rf"useradd --create-home .*\b{user}\b", " ".join(_args("RUN")))


def test_installs_raysegment_and_the_ray_it_pins():
    runs = " ".join(_args("RUN"))
    assert re.search(r'pip install [^&]*\s"?\.(\[[\w,-]+\])?"?(\s|$)', runs)  # the repository itself
    ray_pin = re.search(r'"ray\[default\]==([\d.]+)"', runs).group(1)
    low, high = _pyproject(r'^\s*"ray\[[^\]]*\]>=([\d.]+),<([\d.]+)"').groups()
    version = tuple(int(x) for x in ray_pin.split("."))
    assert tuple(int(x) for x in low.split(".")) <= version < tuple(int(x) for x in high.split("."))


@pytest.mark.parametrize("job", sorted(p.name for p in (REPO / "jobs").glob("*.yaml")))
def test_image_has_the_extras_each_job_needs(job):
    needed = _needed_extras(yaml.safe_load((REPO / "jobs" / job).read_text()))
    assert needed <= _installed_extras(), f"jobs/{job} needs raysegment[{','.join(sorted(needed))}]"


def test_the_job_settings_map_covers_every_runtime_extra():
    # A new extra must say which job setting needs it; the CLI can turn each on for any job
    # (--mlflow-uri, --search optuna), so the image carries every extra but the test tools.
    runtime = _extras() - {"test"}
    assert runtime == set(_installed_extras())
    assert runtime == {extra for extra, _ in EXTRA_FOR_SETTING.values()}, "say which job setting needs each extra in EXTRA_FOR_SETTING"
    assert _needed_extras(yaml.safe_load((REPO / "jobs" / "tune_unetpp.yaml").read_text())) == {"optuna"}


def test_no_secrets_baked_in():
    for name in ("ENV", "ARG", "LABEL"):
        for args in _args(name):
            keys = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", args) or [args.split()[0]]
            assert not [k for k in keys if SECRET_NAME.search(k)], args
    copied = [arg for args in _args("COPY") for arg in args.split() if not arg.startswith("--")]
    assert not [c for c in copied if re.search(r"\.aws|\.ssh|\.ray|credentials|\.env\b|\.pem", c)]


def test_build_context_holds_exactly_what_is_copied():
    """Every COPY source exists and survives Dockerfile.dockerignore; nothing else is sent to the daemon."""
    ignore = [line.strip() for line in (REPO / "infra" / "Dockerfile.dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*"
    included = [p[1:].rstrip("/") for p in ignore if p.startswith("!")]
    for args in _args("COPY"):
        *sources, _ = [a for a in args.split() if not a.startswith("--")]
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: missing from the repository"
            assert any(fnmatch.fnmatch(source, pattern) for pattern in included), source


def test_image_tag_is_the_same_everywhere(cluster_config):
    tag = _image_tag()
    version = _pyproject(r'^version = "([^"]+)"').group(1)
    assert tag.rsplit(":", 1)[1].startswith(version + "-cu")
    cuda = tag.rsplit("-", 1)[1]
    assert f"/whl/{cuda}" in " ".join(_args("ARG"))  # the tag names the torch CUDA build
    assert cluster_config["docker"]["image"] == tag
    assert f"docker build -f infra/Dockerfile -t {tag} ." in DOCKERFILE.read_text()  # header comment
    for manifest in (REPO / "infra" / "k8s").glob("*.yaml"):
        for image in re.findall(r"image: (\S+)", manifest.read_text()):
            assert image == tag or not image.startswith("ghcr.io/raysegment/"), manifest.name
    assert (REPO / "infra" / "k8s" / "raycluster.yaml").read_text().count(f"image: {tag}") == 2


@pytest.mark.slow
def test_docker_build(tmp_path):
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker engine")
    tag = "raysegment-infra-test:latest"
    subprocess.run(["docker", "build", "-f", str(DOCKERFILE), "-t", tag, str(REPO)], check=True)
    try:
        probe = ("import os, ray, raysegment, torch; "
                 "print(os.getuid(), ray.__version__, os.path.isfile('infra/nightly-infer.sh'))")
        out = subprocess.run(["docker", "run", "--rm", tag, "python", "-c", probe],
                             capture_output=True, text=True, check=True).stdout.split()
        assert out[0] != "0" and out[1] == "2.60.0" and out[2] == "True"
        inspect = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, text=True, check=True)
        config = json.loads(inspect.stdout)[0]["Config"]
        assert not [e for e in config.get("Env") or [] if SECRET_NAME.search(e.split("=", 1)[0])]
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)

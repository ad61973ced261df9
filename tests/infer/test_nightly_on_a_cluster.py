"""Three nights on a two-node Ray cluster, every scan and output in loopback S3: a node lost mid-night, and a poison case.

The cluster is the test's own: a head and a second node started with ``ray start`` on this
machine, neither told where S3 is (the driver hands the endpoint to its workers, as
``--s3-endpoint`` does). The archive is a Kaggle LGG prefix that grows night by night; the model is
a 1x1 convolution that ends its process on the poison case's width (``poison_run.py``).

* Night 1: 40 new slices; the second node is killed while it holds work, once the first cases are written.
* Night 2: a new patient with a slice cut short, a re-uploaded slice (its patient is redone) and the
  poison case, which kills its predictor on every try.
* Night 3: nothing new.

After each night the ledger, the masks and the error table are exactly what they should be, no
object is empty, and running the night again changes none of them; nor does running night 1 again
after the others.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from poison_run import ANSWER, EXIT_WIDTH, Poison  # pytest puts this folder on sys.path
from ray_nodes import LocalCluster  # and tests/, for its conftest

from raysegment import storage
from raysegment.infer.layout import case_key
from raysegment.models import ModelSpec, save_model
from raysegment.nightly import NightlyConfig, read_ledger
from raysegment.preprocess import PreprocessConfig
from raysegment.sample_data import make_sample_data
from raysegment.storage_config import ENV_PREFIX

pytestmark = [pytest.mark.slow, pytest.mark.s3]

NIGHTS = ["2026-01-01", "2026-01-02", "2026-01-03"]
SLICES = 4
#: What Ray Data titles the worker processes of the pipeline's stages.
STAGES = ("FlatMap", "MapBatches")


def _patient(root: Path, number: int) -> Path:
    """The folder of sample patient ``number`` (``TCGA_XX_<7000 + number>_<date>``)."""
    return next((root / "kaggle_3m").glob(f"TCGA_*_{7000 + number}_*"))


def _upload(folder: Path, archive: str) -> list[str]:
    """Copy a patient folder into the archive; returns its case ids."""
    for path in sorted(folder.iterdir()):
        storage.write_bytes(storage.join(archive, folder.name, path.name), path.read_bytes())
    return sorted(p.stem for p in folder.glob("*.tif") if not p.stem.endswith("_mask"))


def _objects(bucket: str, prefix: str = "") -> dict[str, tuple[int, str]]:
    """``{key: (size, ETag)}`` of every object under ``prefix``, listed by the S3 API itself (no filesystem view hides any)."""
    name = bucket.removeprefix("s3://")
    pages = storage.s3_client(name).get_paginator("list_objects_v2").paginate(Bucket=name, Prefix=prefix)
    return {o["Key"]: (o["Size"], o["ETag"]) for page in pages for o in page.get("Contents", [])}


class Driver:
    """``poison_run.py`` joined to the cluster: :meth:`start` a night, then read its :meth:`answer`."""

    def __init__(self, process: subprocess.Popen, log: Path):
        self.process, self.log = process, log
        self.answers: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.nodes = self.answer()["nodes"]

    def _read(self) -> None:
        for line in self.process.stdout:
            if line.startswith(ANSWER):
                self.answers.put(json.loads(line[len(ANSWER):]))
        self.answers.put(None)  # the driver ended

    def start(self, date: str) -> None:
        self.process.stdin.write(date + "\n")
        self.process.stdin.flush()

    def answer(self, timeout_s: float = 240) -> dict:
        try:
            answer = self.answers.get(timeout=timeout_s)
        except queue.Empty:
            pytest.fail(f"no answer from the driver in {timeout_s:g} s:\n{self.log.read_text()[-4000:]}")
        if answer is None:
            pytest.fail(f"the driver ended ({self.process.wait()}):\n{self.log.read_text()[-4000:]}")
        assert "raised" not in answer, answer["raised"]
        return answer

    def night(self, date: str) -> dict:
        self.start(date)
        return self.answer()

    def finished(self) -> bool:
        return not self.answers.empty()


@pytest.fixture
def cluster(s3_server):
    """A head and a second node of 1 CPU each: the head alone runs the predictor (half a CPU) and a decode or write task.

    Their environment has the S3 credentials but no endpoint. The folder is short: Ray's Unix
    socket paths are limited to 107 bytes.
    """
    root = Path(tempfile.mkdtemp(prefix="rs-nodes-", dir="/tmp"))
    cluster = LocalCluster.create(root, {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT_URL", ENV_PREFIX))})
    try:
        cluster.add_node(num_cpus=1)
        cluster.add_node(num_cpus=1, wait=False)  # the driver waits for it: both start at once
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def driver(cluster, s3_bucket, s3_server, tmp_path):
    """The nightly driver on the cluster, with a model of the poison kind in the bucket; yields it and the job."""
    model = f"{s3_bucket}/model"
    preprocess = PreprocessConfig(labels={"tumor": "nonzero"}, steps=[{"name": "scale"}])  # no resize: widths reach the model
    save_model(model, Poison(3, 1), ModelSpec("poison", 3, 1), preprocess=preprocess.model_dump(), class_names=["tumor"])
    # One predictor; a unit (a patient's slices) per call, so that a node holds a few of them at a time.
    config = NightlyConfig(archive=f"{s3_bucket}/archive/kaggle_3m", kind="lgg", model=model, out=f"{s3_bucket}/nightly",
                           infer={"workers": 1, "cpus_per_worker": 0.5, "batch_size": SLICES, "case_retries": 1})
    command = [sys.executable, str(Path(__file__).with_name("poison_run.py")), config.model_dump_json(), s3_server, "2"]
    log = tmp_path / "driver.log"  # a file: Ray's warnings would fill a pipe that nobody reads mid-night, and block the driver
    with open(log, "w") as stderr:
        process = subprocess.Popen(command, env=cluster.driver_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=stderr, text=True)
    try:
        yield Driver(process, log), config
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _check(config: NightlyConfig, date: str, expected: dict[str, tuple[str, str]], done: list[str], failed: dict[str, str]) -> dict:
    """Assert the state after a run of the night of ``date``; returns it, for a re-run to compare with.

    Args:
        expected: every case of the archive: its ledger status and the night of its ledger row.
        done, failed: the cases the night did, and the ones it failed with the stage they failed at.
    """
    objects = _objects(config.out.split("/")[2])
    assert not [key for key, (size, _) in objects.items() if size == 0], "an empty object"
    book = read_ledger(config.out)
    assert book["case_id"].is_unique and book["model_version"].nunique() == 1
    book = book.set_index("case_id")
    assert book["status"].to_dict() == {case: status for case, (status, _) in expected.items()}
    assert book["date"].to_dict() == {case: night for case, (_, night) in expected.items()}
    folder = f"nightly/date={date}/masks/"
    masks = {key.removeprefix(folder): etag for key, (_, etag) in objects.items() if key.startswith(folder)}
    assert sorted(masks) == sorted(f"{case_key(case)}.tif" for case in done), "one mask per case done tonight, and no other"
    errors = None
    if done or failed:  # a night without new scans runs no inference
        errors = storage.read_table(f"{config.out}/date={date}/errors.parquet").to_pandas()
        assert dict(zip(errors["case_id"], errors["stage"])) == failed
    return {"ledger": read_ledger(config.out), "masks": masks, "errors": errors}


# Everything is in the limit, the cluster's start-up included: on 2 busy cores that alone takes up to a minute.
@pytest.mark.timeout(480)
def test_three_nights_on_two_nodes_with_a_lost_node_and_a_poison_case(driver, cluster, s3_bucket, tmp_path):
    nights, config = driver
    assert nights.nodes == 2, cluster.nodes[1].log.read_text()[-3000:]
    make_sample_data(str(tmp_path / "scans"), "lgg", patients=11, slices=SLICES, size=32)
    make_sample_data(str(tmp_path / "poison"), "lgg", patients=12, slices=1, size=EXIT_WIDTH)
    expected: dict[str, tuple[str, str]] = {}

    # Night 1: 40 slices. Once the first cases are written, the second node is killed while it
    # runs a stage of the pipeline (a task, or the predictor).
    first_cases = [case for p in range(10) for case in _upload(_patient(tmp_path / "scans", p), config.archive)]
    nights.start(NIGHTS[0])
    deadline = time.monotonic() + 240
    while not (_objects(s3_bucket, f"nightly/date={NIGHTS[0]}/records/") and cluster.nodes[1].running(*STAGES)):
        assert not nights.finished(), "night 1 ended before the second node was killed"
        assert time.monotonic() < deadline, "night 1 wrote nothing, or the second node ran no stage"
        time.sleep(0.2)
    cluster.nodes[1].kill()
    first = nights.answer()
    assert (first["found"], first["new"]) == (40, 40)
    if first["failed"]:  # the night may give up the cases the lost node held, one clear line each; a re-run completes them
        assert all("worker died" in e["error"] or "pipeline stopped" in e["error"] for e in first["errors"]), first["errors"]
        first = nights.night(NIGHTS[0])
    assert (first["done"] + first["skipped"], first["failed"], first["exit_code"]) == (40, 0, 0)
    expected.update({case: ("done", NIGHTS[0]) for case in first_cases})
    night1 = _check(config, NIGHTS[0], expected, first_cases, failed={})

    # Night 2, on the head alone: a new patient with a slice cut short, a re-uploaded slice of
    # patient 0 (its whole volume is redone) and the poison case.
    new_cases = _upload(_patient(tmp_path / "scans", 10), config.archive)
    cut = f"{config.archive}/{_patient(tmp_path / 'scans', 10).name}/{new_cases[1]}.tif"
    whole = storage.read_bytes(cut)
    storage.write_bytes(cut, whole[: len(whole) // 2])  # an upload cut short
    poison = _upload(_patient(tmp_path / "poison", 11), config.archive)
    reuploaded = first_cases[:SLICES]
    folder = f"{config.archive}/{_patient(tmp_path / 'scans', 0).name}"
    storage.write_bytes(f"{folder}/{reuploaded[1]}.tif", storage.read_bytes(f"{folder}/{reuploaded[0]}.tif"))
    second = nights.night(NIGHTS[1])
    failed = {new_cases[1]: "read", poison[0]: "worker"}
    done = [case for case in reuploaded + new_cases if case not in failed]
    assert (second["found"], second["new"], second["done"], second["failed"], second["exit_code"]) == (45, 9, 7, 2, 3)
    expected.update({case: ("done", NIGHTS[1]) for case in reuploaded + new_cases + poison})
    expected.update({case: ("failed", NIGHTS[1]) for case in failed})
    after = _check(config, NIGHTS[1], expected, done, failed)
    errors = after["errors"].set_index("case_id")["error"]
    assert f"{new_cases[1]}.tif" in errors[new_cases[1]]
    # The poison case had its bounded tries (two in the first pass, then case_retries alone) and took no other case down.
    assert "died or ran past the per-case timeout (1800 s a stage) on each of 3 tries" in errors[poison[0]]
    assert after["ledger"].set_index("case_id").loc[poison[0], "error"] == errors[poison[0]]
    run = json.loads(storage.read_bytes(f"{config.out}/date={NIGHTS[1]}/run.json"))
    assert (run["cases"], run["done"], run["failed"]) == (9, 7, 2)
    assert len(_objects(s3_bucket, f"nightly/date={NIGHTS[1]}/records/")) == 7
    assert not [key for key in _objects(s3_bucket) if key.endswith("lease.json")], "a lease left behind"

    # Running night 2 again tries its failed cases again, to the same end, and changes nothing.
    again = nights.night(NIGHTS[1])
    assert (again["found"], again["new"], again["failed"], again["done"] + again["skipped"]) == (45, 9, 2, 7)
    rerun = _check(config, NIGHTS[1], expected, done, failed)
    pd.testing.assert_frame_equal(rerun["ledger"], after["ledger"])
    pd.testing.assert_frame_equal(rerun["errors"], after["errors"])
    assert rerun["masks"] == after["masks"]

    # Night 3: nothing arrived, and the failed cases wait for a new upload. Running it again does nothing either.
    for _ in range(2):
        third = nights.night(NIGHTS[2])
        assert (third["found"], third["new"], third["exit_code"]) == (45, 0, 0)
        pd.testing.assert_frame_equal(_check(config, NIGHTS[2], expected, [], failed={})["ledger"], after["ledger"])

    # Night 1 again, now: every case is complete, and the re-uploaded patient keeps night 2's ledger rows.
    again = nights.night(NIGHTS[0])
    assert (again["found"], again["new"], again["skipped"], again["exit_code"]) == (40, 40, 40, 0)
    rerun = _check(config, NIGHTS[0], expected, first_cases, failed={})
    pd.testing.assert_frame_equal(rerun["ledger"], after["ledger"])
    assert rerun["masks"] == night1["masks"]

"""``raysegment nightly`` over three nights of arrivals: the ledger, the masks and the errors after each.

The archive is a Kaggle LGG folder that grows night by night; the model is the inference tests'
tiny LGG checkpoint. Each night is checked against what should have happened, and re-running a
night changes nothing.
"""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from raysegment.cli import app
from raysegment.nightly import NightlyConfig, read_ledger, run_night
from raysegment.sample_data import make_sample_data

PATIENTS = ["TCGA_CS_7000_19950101", "TCGA_DU_7001_19950408", "TCGA_EZ_7002_19950714"]


@pytest.fixture
def nights(tmp_path, lgg):
    """A source of three patients, an empty archive, and a config whose model is the tiny LGG checkpoint."""
    make_sample_data(str(tmp_path / "source"), "lgg", patients=3, slices=3, size=64)
    archive = tmp_path / "archive" / "kaggle_3m"
    archive.mkdir(parents=True)
    config = NightlyConfig(archive=str(archive), kind="lgg", model=lgg["model"], out=str(tmp_path / "nightly"),
                           infer={"workers": 1, "cpus_per_worker": 0.5})

    def arrive(patient: str) -> None:
        shutil.copytree(tmp_path / "source" / "kaggle_3m" / patient, archive / patient)

    return config, archive, arrive


def _masks(folder) -> list[str]:
    return sorted(p.name for p in (folder / "masks").iterdir()) if (folder / "masks").exists() else []


def test_three_nights_new_reuploaded_and_bad_scans(ray_session, nights, tmp_path):
    config, archive, arrive = nights
    out = tmp_path / "nightly"

    arrive(PATIENTS[0])
    first = run_night(config, "2026-01-01")
    assert (first.found, first.new, first.done, first.failed, first.exit_code) == (3, 3, 3, 0, 0)
    book = read_ledger(config.out)
    assert sorted(book["case_id"]) == [f"{PATIENTS[0]}_{k}" for k in (1, 2, 3)]
    assert set(book["status"]) == {"done"} and set(book["date"]) == {"2026-01-01"} and book["model_version"].nunique() == 1
    assert len(_masks(out / "date=2026-01-01")) == 3

    # Night 2: a new patient, a re-uploaded slice of the first (its whole volume is redone) and a
    # patient with one slice cut short.
    arrive(PATIENTS[1])
    arrive(PATIENTS[2])
    (archive / PATIENTS[0] / f"{PATIENTS[0]}_2.tif").write_bytes((archive / PATIENTS[0] / f"{PATIENTS[0]}_1.tif").read_bytes())
    bad = f"{PATIENTS[2]}_2"
    whole = (archive / PATIENTS[2] / f"{bad}.tif").read_bytes()
    (archive / PATIENTS[2] / f"{bad}.tif").write_bytes(whole[: len(whole) // 2])  # an upload cut short
    second = run_night(config, "2026-01-02")
    assert (second.found, second.new) == (9, 9)
    assert second.failed >= 1 and bad in set(second.errors["case_id"]) and second.exit_code == 3
    errors = pd.read_parquet(out / "date=2026-01-02" / "errors.parquet")
    assert bad in set(errors["case_id"]) and errors["error"].str.contains(f"{bad}.tif").any()
    book = read_ledger(config.out).set_index("case_id")
    assert len(book) == 9 and book.loc[bad, "status"] == "failed" and bad in book.loc[bad, "error"]
    assert set(book.loc[[f"{PATIENTS[0]}_{k}" for k in (1, 2, 3)], "date"]) == {"2026-01-02"}
    done = book.index[book["status"] == "done"]
    assert len(_masks(out / "date=2026-01-02")) == len(done)
    night_json = json.loads((out / "date=2026-01-02" / "night.json").read_text())
    assert (night_json["new"], night_json["failed"], night_json["model"]["version"]) == (9, second.failed, second.model_version)
    report = (out / "date=2026-01-02" / "report.md").read_text()
    assert "| failed |" in report and bad in report and (out / "date=2026-01-02" / "report.png").stat().st_size > 0

    # Re-running night 2 runs the same cases and changes nothing: completed patients are skipped
    # (the bad slice's patient is post-processed as one volume, so its readable slices are
    # segmented again, to the same masks), the ledger and the mask files stay as they were.
    ledger_before = read_ledger(config.out)
    masks_before = {p.name: p.read_bytes() for p in (out / "date=2026-01-02" / "masks").iterdir()}
    again = run_night(config, "2026-01-02")
    assert (again.new, again.failed, again.done + again.skipped) == (9, second.failed, 9 - second.failed) and again.skipped >= 6
    pd.testing.assert_frame_equal(read_ledger(config.out), ledger_before)
    assert {p.name: p.read_bytes() for p in (out / "date=2026-01-02" / "masks").iterdir()} == masks_before

    # Night 3: nothing arrived. The bad slice waits for a new upload (or --retry-failed).
    third = run_night(config, "2026-01-03")
    assert (third.found, third.new, third.exit_code) == (9, 0, 0)
    assert "No new scans" in (out / "date=2026-01-03" / "report.md").read_text()
    pd.testing.assert_frame_equal(read_ledger(config.out), ledger_before)
    assert run_night(config, "2026-01-03").found == 9  # a re-run reports the archive the night started on, not its manifest
    retried = run_night(config.model_copy(update={"retry_failed": True}), "2026-01-04")
    assert retried.new == 3 and retried.failed == second.failed  # the bad slice's whole patient


def test_re_running_an_earlier_night_keeps_what_a_later_night_recorded(tmp_path):
    from raysegment.nightly.ledger import record

    def night(date: str, cases: dict[str, tuple[str, str]]) -> pd.DataFrame:
        return pd.DataFrame([{"case_id": c, "model_version": "v1", "fingerprint": f, "status": s, "date": date, "error": None}
                             for c, (f, s) in cases.items()])

    out = str(tmp_path)
    book = record(out, read_ledger(out), night("2026-01-01", {"a": ("a1", "done"), "b": ("b1", "failed")}))
    book = record(out, book, night("2026-01-02", {"a": ("a2", "done")}))  # a re-uploaded
    # Night 1 again, to finish it: b is done now, and a keeps night 2's row.
    record(out, book, night("2026-01-01", {"a": ("a1", "done"), "b": ("b1", "done")}))
    assert read_ledger(out).set_index("case_id")[["fingerprint", "status", "date"]].to_dict("index") == {
        "a": {"fingerprint": "a2", "status": "done", "date": "2026-01-02"},
        "b": {"fingerprint": "b1", "status": "done", "date": "2026-01-01"}}


def test_cli_night_without_new_scans_says_so(ray_session, nights, tmp_path):
    config, archive, arrive = nights
    arrive(PATIENTS[0])
    job = tmp_path / "nightly.yaml"
    job.write_text(f"archive: {config.archive}\nkind: lgg\nmodel: {config.model}\nout: {config.out}\ninfer: {{workers: 1, cpus_per_worker: 0.5}}\n")
    first = CliRunner().invoke(app, ["nightly", "--config", str(job), "--date", "2026-02-01", "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.output)["done"] == 3
    second = CliRunner().invoke(app, ["nightly", "--config", str(job), "--date", "2026-02-02"])
    assert second.exit_code == 0, second.output
    assert "no new scans" in second.output and "nothing to do" in second.output


@pytest.mark.parametrize("infer, message", [({"manifest": "x"}, "set by the night itself"), ({"batch_sise": 2}, "batch_sise")])
def test_bad_nightly_configs_are_one_line(tmp_path, infer, message):
    from raysegment.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        NightlyConfig.load(None, archive="a", kind="lgg", model="m", out="o", infer=infer)
    with pytest.raises(ConfigError, match="unknown importer"):
        NightlyConfig.load(None, archive="a", kind="kaggle", model="m", out="o")


def test_the_shipped_nightly_job_is_valid():
    from pathlib import Path

    config = NightlyConfig.load(str(Path(__file__).resolve().parents[2] / "jobs" / "nightly.yaml"))
    assert config.out.startswith("s3://") and config.archive.startswith("s3://")
    assert config.infer_config(config.model, "m.parquet", "o").gpus_per_worker == 1


def test_new_scans_lists_what_the_next_night_would_do(ray_session, nights, tmp_path):
    config, archive, arrive = nights
    arrive(PATIENTS[0])
    run_night(config, "2026-03-01")
    arrive(PATIENTS[1])
    out = tmp_path / "manifests" / "date={date}" / "manifest.parquet"
    result = CliRunner().invoke(app, ["manifest", "new-scans", config.archive, "--kind", "lgg", "--nightly", config.out,
                                      "--model", config.model, "--out", str(out), "--date", "2026-03-02"])
    assert result.exit_code == 0, result.output
    assert "3 new lgg cases" in result.output
    from raysegment.manifest import read_manifest

    listed = read_manifest(str(tmp_path / "manifests" / "date=2026-03-02" / "manifest.parquet"))
    assert sorted(listed["case_id"]) == [f"{PATIENTS[1]}_{k}" for k in (1, 2, 3)] and set(listed["split"]) == {"unlabeled"}
    assert run_night(config, "2026-03-02").new == 3  # what the night then does


def test_an_empty_archive_is_one_line(tmp_path):
    (tmp_path / "archive").mkdir()
    result = CliRunner().invoke(app, ["manifest", "new-scans", str(tmp_path / "archive"), "--kind", "lgg", "--out", str(tmp_path / "m.parquet")])
    assert result.exit_code == 2 and "no lgg scans found" in result.output

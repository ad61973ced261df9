"""Trusted resume without a search: the key, the signature, and what :func:`verify_state` refuses.

The real search (interrupted, signed, resumed, and refused once tampered with) is in test_search.py.
"""

from __future__ import annotations

import json
import os
import stat
from types import SimpleNamespace

import pytest

from raysegment import storage
from raysegment.tune.trust import SIGNATURE_FILE, SignState, UntrustedStateError, state_key, stored_state, verify_state, write_signature

STATE = {
    "tuner.pkl": b"tuner",
    "experiment_state-2026-12-02_10-00-00.json": b'{"trial_data": []}',
    "searcher-state-2026-12-02_10-00-00.pkl": b"searcher",
}


@pytest.fixture(params=["local", "s3"])
def exp(request, tmp_path) -> str:
    """An experiment folder whose ``tune/`` holds Tune-like state, a trial folder and a non-state file."""
    root = request.getfixturevalue("s3_bucket") + "/exp" if request.param == "s3" else str(tmp_path / "exp")
    for name, data in {**STATE, "trial_00000/params.pkl": b"params", "progress.csv": b"a,b"}.items():
        storage.write_bytes(storage.join(root, "tune", name), data)
    return root


def tune_dir(exp: str) -> str:
    return storage.join(exp, "tune")


def sign(exp: str) -> None:
    write_signature(exp, stored_state(tune_dir(exp)))


def refusal(exp: str) -> str:
    with pytest.raises(UntrustedStateError) as caught:
        verify_state(exp, tune_dir(exp))
    assert "\n" not in str(caught.value) and "refusing to resume" in str(caught.value)
    return str(caught.value)


def test_key_file_is_created_private_once(tmp_path, monkeypatch):
    monkeypatch.delenv("RAYSEGMENT_STATE_KEY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    key = state_key()
    path = tmp_path / "config" / "raysegment" / "state.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(key) == 64
    assert state_key() == key
    monkeypatch.setenv("RAYSEGMENT_STATE_KEY", "from-the-environment")
    assert state_key() == b"from-the-environment"


def test_state_signed_with_the_key_verifies(exp):
    sign(exp)
    verify_state(exp, tune_dir(exp))
    document = json.loads(storage.read_bytes(storage.join(exp, SIGNATURE_FILE)))
    assert sorted(document["files"]) == sorted(STATE)  # Tune's top-level state only
    assert document["algorithm"] == "HMAC-SHA256" and state_key().decode() not in json.dumps(document)


def test_missing_signature_is_refused(exp):
    assert refusal(exp).startswith(storage.join(exp, SIGNATURE_FILE) + ": missing")


def test_changed_state_file_is_refused(exp):
    sign(exp)
    uri = storage.join(tune_dir(exp), "searcher-state-2026-12-02_10-00-00.pkl")
    storage.write_bytes(uri, b"cos\nsystem\n(S'touch /tmp/owned'\ntR.")
    assert refusal(exp).startswith(f"{uri}: changed since raysegment signed it")


def test_planted_or_removed_state_file_is_refused(exp):
    sign(exp)
    newer = storage.join(tune_dir(exp), "experiment_state-2099-01-01_00-00-00.json")  # Tune restores the newest
    storage.write_bytes(newer, b"{}")
    assert refusal(exp).startswith(f"{newer}: not signed")
    storage.delete(newer)
    storage.delete(storage.join(tune_dir(exp), "tuner.pkl"))
    assert refusal(exp).startswith(storage.join(tune_dir(exp), "tuner.pkl") + ": missing")


def test_signature_of_another_key_or_edited_is_refused(exp, monkeypatch):
    monkeypatch.setenv("RAYSEGMENT_STATE_KEY", "the attacker's key")
    sign(exp)
    monkeypatch.setenv("RAYSEGMENT_STATE_KEY", "the driver's key")
    assert "not signed with this driver's key" in refusal(exp)
    sign(exp)
    uri = storage.join(exp, SIGNATURE_FILE)
    document = json.loads(storage.read_bytes(uri))
    document["files"]["tuner.pkl"] = "0" * 64  # a digest swapped for a planted file's
    storage.write_bytes(uri, json.dumps(document).encode())
    assert "not signed with this driver's key" in refusal(exp)


def test_sign_state_signs_what_the_driver_staged_not_what_the_bucket_holds(exp, tmp_path):
    staging = tmp_path / "driver_artifacts"
    staging.mkdir()
    for name, data in STATE.items():
        if name != "tuner.pkl":  # Tuner() writes it straight to storage
            (staging / name).write_bytes(data)
    trials = [SimpleNamespace(storage=SimpleNamespace(experiment_driver_staging_path=os.fspath(staging)))]
    signature = storage.join(exp, SIGNATURE_FILE)
    signer = SignState(exp, tune_dir(exp))
    signer.setup()
    signer.on_step_end(0, trials)  # after a periodic save: a driver killed now leaves signed state
    verify_state(exp, tune_dir(exp))
    storage.delete(signature)
    signer.on_step_end(1, trials)  # no save since: nothing to sign again
    assert not storage.exists(signature)
    planted = storage.join(tune_dir(exp), "experiment_state-2099-01-01_00-00-00.json")
    storage.write_bytes(planted, b"{}")  # during the search, by someone who can write the bucket
    signer.on_experiment_end(trials)
    assert refusal(exp).startswith(f"{planted}: not signed")
    storage.delete(planted)
    verify_state(exp, tune_dir(exp))

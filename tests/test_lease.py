"""One writer per output prefix: refusal naming the holder, takeover after expiry, renewal, release; locally and on loopback S3."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from raysegment import lease, storage


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def out(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "out")
    return f"{request.getfixturevalue('s3_bucket')}/results/night"


def test_second_taker_is_refused_naming_the_holder(out):
    lease.refuse_if_held(out)
    held = lease.acquire(out, run_id="first")
    with pytest.raises(lease.LeaseHeldError, match="first"):
        lease.refuse_if_held(out)
    with pytest.raises(lease.LeaseHeldError) as refused:
        lease.acquire(out, run_id="second")
    message = str(refused.value)
    for part in ("first", held.document["owner"]["host"], str(held.document["owner"]["pid"]), held.document["started"],
                 held.document["expires"]):
        assert part in message
    held.release()
    assert not storage.exists(lease.lease_uri(out))
    lease.acquire(out, run_id="second").release()


def test_expired_lease_is_taken_over_and_its_holder_cannot_renew(out):
    stale = lease.acquire(out, run_id="killed", ttl_s=0.5)
    time.sleep(0.6)
    taker = lease.acquire(out, run_id="retry")
    assert taker.document["took_over_from"]["run_id"] == "killed"
    with pytest.raises(lease.LeaseLostError, match="retry"):
        stale.renew()
    stale.release()  # not its lease any more: nothing is deleted
    assert json.loads(storage.read_bytes(lease.lease_uri(out)))["owner"]["run_id"] == "retry"
    taker.release()


def test_a_lease_whose_process_is_gone_on_this_host_is_taken_over_at_once(out):
    held = lease.acquire(out, run_id="killed", ttl_s=3600)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    document = {**held.document, "owner": {**held.document["owner"], "pid": gone.pid}}
    storage.write_bytes(lease.lease_uri(out), json.dumps(document).encode())
    taker = lease.acquire(out, run_id="rerun")
    assert taker.document["took_over_from"]["pid"] == gone.pid
    taker.release()


def test_renewal_keeps_a_long_run_s_lease(out):
    with lease.hold(out, run_id="night", ttl_s=0.6) as held:
        time.sleep(1.2)  # twice the ttl: only renewals keep it
        with pytest.raises(lease.LeaseHeldError, match="night"):
            lease.acquire(out, run_id="retry")
        held.check()
    assert not storage.exists(lease.lease_uri(out))


def test_of_simultaneous_takers_exactly_one_wins(out):
    results, start = [], threading.Barrier(6)

    def take(i: int) -> None:
        start.wait()
        try:
            results.append(lease.acquire(out, run_id=f"run{i}"))
        except lease.LeaseHeldError as exc:
            results.append(exc)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [r for r in results if isinstance(r, lease.Lease)]
    assert len(winners) == 1 and len(results) == 6
    assert all(winners[0].run_id in str(r) for r in results if not isinstance(r, lease.Lease))


def test_a_write_applied_whose_answer_was_lost_is_still_ours(out, monkeypatch):
    """The store applies a conditional write, the answer never arrives, the SDK's retry is refused (412):
    the lease is this run's all the same, at start and at renewal."""
    real = lease._store(out)

    class AnswerLost:
        def __getattr__(self, name):
            return getattr(real, name)

        def create(self, data):
            real.create(data)
            return None

        def replace(self, data, token):
            real.replace(data, token)
            return None

    monkeypatch.setattr(lease, "_store", lambda _: AnswerLost())
    held = lease.acquire(out, run_id="mine")
    assert held.run_id == "mine"
    before = held.document["expires"]
    time.sleep(0.01)
    held.renew()
    assert held.document["expires"] > before and json.loads(storage.read_bytes(lease.lease_uri(out)))["expires"] == held.document["expires"]
    held.release()
    assert not storage.exists(lease.lease_uri(out))

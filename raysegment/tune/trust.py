"""Trusted resume: a search resumes only from Tune state that this driver's key signed.

Resuming unpickles Tune's state from the experiment folder: ``tuner.pkl`` and the ``.json`` and
``.pkl`` files at the top of ``EXP/tune/`` (``experiment_state-*.json``, the searcher's
``searcher-state-*.pkl``...), exactly the files Tune downloads as its state. Whoever can write
the bucket could otherwise run code on the driver. So the driver writes ``EXP/tune_state.sig``:
the SHA-256 of each of those files and an HMAC-SHA256 of that list; and :func:`verify_state`
checks it before Ray reads anything: a missing, changed or unsigned (extra) file, or a signature
made with another key, refuses the resume.

What is signed is what the driver wrote, not what the bucket holds (a file planted during a long
search would otherwise be signed with the rest): the state files of Tune's local staging folder,
which Tune uploads after each save, and ``tuner.pkl`` as it was when the session started
(written by this driver for a new search, verified for a resumed one). :class:`SignState` signs
after each of Tune's periodic saves and again when Tune ends a session, after its last save and
upload, whether the search finished, was interrupted (Ctrl+C, SIGUSR1) or failed. A driver killed
outright leaves the signature of its last save, which matches once that save's upload had
finished; if it had not, the resume is refused and the search starts again under another ``--out``.

The key never goes to the bucket: ``RAYSEGMENT_STATE_KEY`` when set (give every machine that
drives the search the same value), else ``$XDG_CONFIG_HOME/raysegment/state.key``
(``~/.config/raysegment/state.key``), 32 random bytes created with mode 0600 on first use.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import tempfile

from ray.tune import Callback

from raysegment import storage
from raysegment.errors import RaySegmentError

KEY_ENV = "RAYSEGMENT_STATE_KEY"
SIGNATURE_FILE = "tune_state.sig"
TUNER_FILE = "tuner.pkl"
_STATE_SUFFIXES = (".json", ".pkl")


class UntrustedStateError(RaySegmentError):
    """A search's Tune state is not as raysegment signed it: resuming would unpickle foreign data.

    Args:
        uri: the file that is missing, changed or unsigned.
        problem: what is wrong, in a few words.
    """

    def __init__(self, uri: str, problem: str):
        self.uri, self.problem = str(uri), " ".join(str(problem).split())
        super().__init__(f"{self.uri}: {self.problem}; refusing to resume (start a new search under another --out)")

    def __reduce__(self):
        return (type(self), (self.uri, self.problem))


def state_key() -> bytes:
    """The signing key: ``RAYSEGMENT_STATE_KEY``, else the key file (created 0600 on first use)."""
    if os.environ.get(KEY_ENV):
        return os.environ[KEY_ENV].encode()
    folder = os.path.join(os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config"), "raysegment")
    path = os.path.join(folder, "state.key")
    if not os.path.exists(path):
        os.makedirs(folder, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder)  # mode 0600
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        # link, not rename: of two drivers starting at once, the first key stays, and nobody
        # reads a key file before it is complete
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
        os.unlink(tmp)
    with open(path) as f:
        return f.read().strip().encode()


def _is_state_file(name: str) -> bool:
    return name.endswith(_STATE_SUFFIXES)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _mac(digests: dict[str, str]) -> str:
    return hmac.new(state_key(), json.dumps(digests, sort_keys=True).encode(), hashlib.sha256).hexdigest()


def stored_state(tune_uri: str) -> dict[str, str]:
    """``{file name: SHA-256}`` of the state files at the top of Tune's folder, as storage holds them."""
    files = [uri for uri in storage.list_files(tune_uri, recursive=False) if _is_state_file(storage.basename(uri))]
    return {storage.basename(uri): _sha256(storage.read_bytes(uri)) for uri in files}


def write_signature(exp_uri: str, digests: dict[str, str]) -> None:
    """Write ``EXP/tune_state.sig``: the files' SHA-256 and their HMAC with :func:`state_key`."""
    document = {"algorithm": "HMAC-SHA256", "files": digests, "hmac": _mac(digests)}
    storage.write_bytes(storage.join(exp_uri, SIGNATURE_FILE), json.dumps(document, indent=2, sort_keys=True).encode())


def verify_state(exp_uri: str, tune_uri: str) -> None:
    """Check Tune's state in ``tune_uri`` against the signature in ``exp_uri``.

    Raises:
        UntrustedStateError: naming the signature or the first file that does not match it.
    """
    signature_uri = storage.join(exp_uri, SIGNATURE_FILE)
    try:
        document = json.loads(storage.read_bytes(signature_uri))
        signed = dict(document["files"])
        valid = hmac.compare_digest(str(document["hmac"]), _mac(signed))
    except storage.MissingObjectError:
        raise UntrustedStateError(signature_uri, "missing: this search's state was not signed by raysegment") from None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise UntrustedStateError(signature_uri, "not a raysegment state signature") from None
    if not valid:
        raise UntrustedStateError(signature_uri, f"not signed with this driver's key (${KEY_ENV} or the key file)")
    found = stored_state(tune_uri)
    for name in sorted(signed.keys() | found.keys()):
        problem = _mismatch(signed.get(name), found.get(name))
        if problem:
            raise UntrustedStateError(storage.join(tune_uri, name), problem)


def _mismatch(signed: str | None, found: str | None) -> str | None:
    if found is None:
        return "missing"
    if signed is None:
        return "not signed: written by something other than raysegment"
    return "changed since raysegment signed it" if found != signed else None


class SignState(Callback):
    """Tune callback (driver side): signs the search's state after each of Tune's saves and at the end.

    Args:
        exp_uri: the experiment folder (the signature goes there, beside Tune's folder).
        tune_uri: Tune's folder, ``EXP/tune``.
    """

    def __init__(self, exp_uri: str, tune_uri: str):
        self.exp_uri, self.tune_uri = exp_uri, tune_uri
        self.tuner_digest: str | None = None
        self.signed_stamps: dict[str, tuple[int, int]] = {}

    def setup(self, **info):
        # Tuner() wrote tuner.pkl just before fit(); a resumed search's was verified just before.
        self.tuner_digest = _sha256(storage.read_bytes(storage.join(self.tune_uri, TUNER_FILE)))

    def on_step_end(self, iteration, trials, **info):
        self.sign(trials)

    def on_experiment_end(self, trials, **info):
        self.sign(trials, force=True)

    def sign(self, trials, force: bool = False) -> None:
        """Sign the state files of Tune's staging folder (when they changed since the last signature) and ``tuner.pkl``."""
        if not trials:  # nothing ran: nothing to resume
            return
        staging = trials[0].storage.experiment_driver_staging_path
        paths = {name: os.path.join(staging, name) for name in os.listdir(staging) if _is_state_file(name)}
        # Tune saves every few seconds at most, while steps come every few milliseconds.
        stamps = {name: (os.stat(path).st_mtime_ns, os.stat(path).st_size) for name, path in paths.items() if os.path.isfile(path)}
        if stamps == self.signed_stamps and not force:
            return
        digests = {}
        for name in stamps:
            with open(paths[name], "rb") as f:
                digests[name] = _sha256(f.read())
        write_signature(self.exp_uri, {**digests, TUNER_FILE: self.tuner_digest})
        self.signed_stamps = stamps

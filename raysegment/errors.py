"""Error types raised by raysegment.

Every error a user can cause with bad input is a :class:`RaySegmentError`, whose message is one
line naming the file (or URI) and what is wrong with it, so a batch job can record it and go on.
"""

from __future__ import annotations


class RaySegmentError(Exception):
    """Base class of all errors raysegment raises on purpose."""


class ScanReadError(RaySegmentError):
    """A scan or mask could not be read: corrupt, truncated, unsupported or missing.

    Args:
        uri: the file (or folder, for a DICOM series) that failed.
        problem: what is wrong, in a few words.
    """

    def __init__(self, uri: str, problem: str):
        self.uri = str(uri)
        self.problem = " ".join(str(problem).split())  # one line, whatever the library said
        super().__init__(f"{self.uri}: {self.problem}")

    def __reduce__(self):  # keep the two fields across Ray's pickling
        return (type(self), (self.uri, self.problem))


class StorageError(RaySegmentError):
    """A URI could not be reached, read or written (bad credentials, no endpoint, no such key)."""


class ManifestError(RaySegmentError):
    """A manifest does not follow the documented schema."""


class ConfigError(RaySegmentError):
    """A job configuration is invalid."""

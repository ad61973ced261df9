"""Side-by-side comparison of trained models (``raysegment compare``)."""

from raysegment.compare.report import CompareResult, compare
from raysegment.compare.sources import ModelRecord, read_record

__all__ = ["CompareResult", "ModelRecord", "compare", "read_record"]

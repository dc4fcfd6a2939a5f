"""An image object's attributes as the writer's modules set them, before they are a Dataset.

Setting an attribute on a pydicom ``Dataset`` looks its keyword up, builds a ``DataElement``,
converts and validates the value: ≈ 10 µs each, ≈ 1 ms for an image's ≈ 90 attributes, and
twice that inside the store's loop (decision 0020). The modules of :mod:`.dicom` set them on
an :class:`ImageAttributes` instead (a dict by keyword, with the same ``ds.Keyword = value``
syntax); the store encodes that straight to a file (:func:`.dicom_encode.encode_attributes`)
and :meth:`ImageAttributes.to_dataset` makes the pydicom ``Dataset`` for everyone else.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset

__all__ = ["ImageAttributes"]


class ImageAttributes:
    """Attribute values by DICOM keyword, in the Python types the modules set (``str``,
    ``int``, lists of them, ``bytes``, sequences of ``Dataset`` items)."""

    __slots__ = ("_values", "file_meta")

    def __init__(self, file_meta: FileMetaDataset) -> None:
        object.__setattr__(self, "_values", {})
        object.__setattr__(self, "file_meta", file_meta)

    def __setattr__(self, keyword: str, value: Any) -> None:
        if keyword == "file_meta":
            object.__setattr__(self, keyword, value)
        else:
            self._values[keyword] = value

    def __getattr__(self, keyword: str) -> Any:
        try:
            return self._values[keyword]
        except KeyError:
            raise AttributeError(keyword) from None

    def __delattr__(self, keyword: str) -> None:
        try:
            del self._values[keyword]
        except KeyError:
            raise AttributeError(keyword) from None

    def __contains__(self, keyword: str) -> bool:
        return keyword in self._values

    def items(self) -> Iterator[tuple[str, Any]]:
        return iter(self._values.items())

    def to_dataset(self) -> Dataset:
        """The pydicom ``Dataset`` (pydicom converts and validates every value here)."""
        ds = Dataset()
        ds.file_meta = self.file_meta
        for keyword, value in self._values.items():
            setattr(ds, keyword, value)
        return ds

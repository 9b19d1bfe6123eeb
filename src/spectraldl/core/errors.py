"""Errors that name the file and the problem, so a person can act on them."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path


class SpectrumError(ValueError):
    """A file that cannot become a usable spectrum.

    Attributes
    ----------
    path
        The file at fault.
    reason
        What is wrong with it, in words a person understands.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


NO_SUCH_FILE = "cannot read the file (No such file or directory)"
"""The reason of an input that was not there when read: deleted since it was listed, or,
where the task ran on another machine, a file that machine cannot see."""


@dataclass(frozen=True)
class FileError:
    """An input that did not make it into the output, and why."""

    path: str
    reason: str


def printable_path(path: str) -> str:
    """``path`` as text that can be written anywhere: bytes that are not UTF-8 as ``\\xNN``.

    File names are bytes; Python keeps the undecodable ones as lone surrogates,
    which no UTF-8 file (an errors CSV, an HDF5 string) can hold.
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")


class NotUTF8Error(ValueError):
    """A text file (a CSV) in another encoding: names the file and how to save it instead."""


_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def decode_utf8(raw: bytes, path: str | Path) -> str:
    """``raw`` (the bytes of ``path``) as text: UTF-8, with or without Excel's BOM.

    Raises `NotUTF8Error` naming the file for UTF-16 (Excel's 'Unicode text'),
    binary data and other code pages (latin-1), with the way to save it as UTF-8.
    """
    if raw[:2] in _UTF16_BOMS or b"\0" in raw:
        raise NotUTF8Error(
            f"{path}: not UTF-8 text (UTF-16, as Excel's 'Unicode text', or binary: it holds "
            "NUL bytes); save it as CSV UTF-8"
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise NotUTF8Error(
            f"{path}: not UTF-8 text: byte {exc.start} (0x{raw[exc.start]:02x}) cannot be "
            "decoded (latin-1 or another code page?); save it as CSV UTF-8"
        ) from None


def delimiter_hint(fields: list[str] | tuple[str, ...]) -> str:
    """A hint for a CSV header or row read as one field holding ``;`` or a tab, else ''.

    Such a file is separated by something other than commas (a European
    Excel writes semicolons); the hint says so, to follow a message that
    shows the fields.
    """
    text = " ".join(str(f) for f in fields)
    for char, name in ((";", "semicolons"), ("\t", "tabs")):
        if char in text and "," not in text:
            return f" (the file seems separated by {name}, not commas: save it as comma-separated)"
    return ""


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def _errno_of(exc: OSError) -> int | None:
    """The errno of an OSError, also where HDF5 only names it in the message (as h5py does)."""
    if exc.errno is not None:
        return exc.errno
    text = str(exc)
    for code in _NO_SPACE + _NOT_WRITABLE:
        if os.strerror(code) in text or f"errno = {code}," in text:
            return code
    return None


def is_not_writable(exc: BaseException) -> bool:
    """True for a write refused for the place: read-only, no permission."""
    return isinstance(exc, OSError) and _errno_of(exc) in _NOT_WRITABLE


def is_output_error(exc: BaseException) -> bool:
    """True for a write that failed for the place: no space, read-only, no permission."""
    return isinstance(exc, OSError) and _errno_of(exc) in _NO_SPACE + _NOT_WRITABLE


def describe_os_error(
    exc: OSError, where: str | Path | None = None, *, kept: str = "the finished chunks are kept"
) -> str:
    """One line for people about a failed write: what happened where, what of the run is
    ``kept`` (a job's chunks by default), and what to do."""
    place = where or exc.filename or "the output"
    code = _errno_of(exc)
    if code in _NO_SPACE:
        return (
            f"{place}: no space left on the device; {kept}: free some "
            "space and run the same command to resume"
        )
    if code in _NOT_WRITABLE:
        return f"{place}: cannot write there ({os.strerror(code)}); choose a writable folder"
    return f"{place}: {exc.strerror or exc}"

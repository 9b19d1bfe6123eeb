"""Find the spectrum files under the inputs of a command: one walk for ingest and classify.

Named files are always tried; folders are walked in sorted order (a folder's
files, then its subfolders) for names the readers accept (`SPECTRUM_SUFFIXES`).
Symbolic links are followed, to files and to folders, with loop protection:
a folder already walked (the same device and inode) is not walked again, and
one that leads back to a folder above it is reported as a symlink loop.
Whatever cannot be read is reported, never skipped silently and never a crash:
a folder that cannot be listed, a broken link, a link loop, and anything named
like a spectrum that is not a regular file (a FIFO or a device would block or
never end; they are never opened). Files are yielded as they are found, so a
release of millions of files is walked in constant memory; the bad entries
(usually few) are collected.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from spectraldl.core.errors import FileError, printable_path
from spectraldl.io.archives.fitsfile import SPECTRUM_SUFFIXES, file_kind


def is_spectrum_name(name: str) -> bool:
    """True for names the spectrum readers accept (`SPECTRUM_SUFFIXES`, any case)."""
    return name.lower().endswith(SPECTRUM_SUFFIXES)


def _utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


@dataclass
class Walk:
    """One walk over ``paths``: iterate for the files; `bad` fills as the walk goes.

    Iterating again walks again (the same files in the same order when nothing
    changed), with `bad` collected afresh. A file is listed once however it is
    reached (named twice, named and inside a walked folder, through links),
    remembering only named files and link targets, so memory stays constant.
    Raises `FileNotFoundError` for an input that does not exist at all (not
    even as a broken link).
    """

    paths: tuple[str, ...]
    bad: list[FileError] = field(default_factory=list)

    def __iter__(self) -> Iterator[str]:
        self.bad = []
        named: set[tuple[int, int]] = set()
        roots: list[str] = []
        for raw in self.paths:
            if not os.path.lexists(raw):
                raise FileNotFoundError(f"{raw}: no such file or directory")
            try:
                info = os.stat(raw)
            except OSError:
                continue  # reported when the walk reaches it
            if stat.S_ISREG(info.st_mode):
                named.add((info.st_dev, info.st_ino))
            elif stat.S_ISDIR(info.st_mode):
                roots.append(os.path.realpath(raw) + os.sep)
        state = _State(named=frozenset(named), roots=tuple(roots))
        for raw in self.paths:
            for path in self._input(raw, state):
                if _utf8(path):
                    yield path
                else:
                    self._refuse(path, "its name is not valid UTF-8 (shown escaped); rename it")

    def _refuse(self, path: str, reason: str) -> None:
        self.bad.append(FileError(printable_path(path), reason))

    def _follow(self, path: str, *, report_broken: bool = True) -> os.stat_result | None:
        """``os.stat`` through links; None (and a bad entry) for a link loop or a broken link."""
        try:
            return os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self._refuse(path, f"a symlink loop ({_why(exc)}); not followed")
            elif report_broken and os.path.islink(path):
                self._refuse(path, f"a broken symlink to {os.readlink(path)} ({_why(exc)})")
            elif report_broken:
                self._refuse(path, f"cannot read it ({_why(exc)})")
            return None

    def _input(self, path: str, state: _State) -> Iterator[str]:
        info = self._follow(path)
        if info is None:
            return
        if stat.S_ISDIR(info.st_mode):
            yield from self._folder(path, info, state, ancestors={})
        elif not stat.S_ISREG(info.st_mode):
            self._refuse(path, f"{file_kind(info.st_mode)}, not a regular file; never opened")
        elif state.first((info.st_dev, info.st_ino)):
            yield path

    def _folder(
        self,
        folder: str,
        info: os.stat_result,
        state: _State,
        ancestors: dict[tuple[int, int], str],
    ) -> Iterator[str]:
        key = (info.st_dev, info.st_ino)
        if key in ancestors:
            self._refuse(folder, f"a symlink loop: it leads back to {ancestors[key]}; not followed")
            return
        if key in state.walked:
            return  # reached again through a link: its files are listed once
        state.walked.add(key)
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            self._refuse(folder, f"cannot read the folder ({_why(exc)}); its files were not read")
            return
        folders: list[tuple[str, os.stat_result]] = []
        for entry in entries:
            spectrum = is_spectrum_name(entry.name)
            try:
                if entry.is_symlink():
                    target = self._follow(entry.path, report_broken=spectrum)
                    if target is None:
                        continue
                    if stat.S_ISREG(target.st_mode) and spectrum:
                        if self._first_through_link(entry.path, target, state):
                            yield entry.path
                        continue
                elif entry.is_file(follow_symlinks=False):
                    file_key = (info.st_dev, entry.inode())
                    if spectrum and file_key not in state.named and file_key not in state.once:
                        yield entry.path
                    continue
                else:
                    target = entry.stat(follow_symlinks=False)
            except OSError as exc:
                self._refuse(entry.path, f"cannot read it ({_why(exc)})")
                continue
            if stat.S_ISDIR(target.st_mode):
                folders.append((entry.path, target))
            elif spectrum and not stat.S_ISREG(target.st_mode):
                kind = file_kind(target.st_mode)
                self._refuse(entry.path, f"{kind}, not a regular file; never opened")
        inner = {**ancestors, key: folder}
        for path, target in folders:
            yield from self._folder(path, target, state, inner)

    @staticmethod
    def _first_through_link(path: str, target: os.stat_result, state: _State) -> bool:
        """True when a link to a file is the way to list it.

        Not when its target lies inside a walked input folder (the walk lists it
        under its own name) or was already listed.
        """
        real = os.path.realpath(path)
        if real.startswith(state.roots) and is_spectrum_name(os.path.basename(real)):
            return False
        return state.first((target.st_dev, target.st_ino))


@dataclass
class _State:
    """What one walk remembers: folders walked, named inputs, files listed via links."""

    named: frozenset[tuple[int, int]]
    roots: tuple[str, ...]
    walked: set[tuple[int, int]] = field(default_factory=set)
    once: set[tuple[int, int]] = field(default_factory=set)

    def first(self, key: tuple[int, int]) -> bool:
        """True the first time a named file or link target is listed (and remember it)."""
        if key in self.once:
            return False
        self.once.add(key)
        return True


def walk(paths: Iterable[str | Path]) -> Walk:
    """A `Walk` over ``paths`` (files and folders), ready to iterate."""
    return Walk(tuple(str(p) for p in paths))


def discover(paths: Iterable[str | Path]) -> tuple[list[str], list[FileError]]:
    """Every spectrum file under ``paths``, and the entries that cannot be read, with reasons.

    Raises `FileNotFoundError` for an input that does not exist.
    """
    found = walk(paths)
    files = list(found)
    return files, found.bad

"""The local-disk backend: a folder of this machine, reached through the os
module directly (fsspec's LocalFileSystem builds a dict per entry and
rewrites the path on every call), and confined to that folder.

Confinement: users cannot make symbolic links, but anyone who can write to
the folder on the host can, so a path that leads outside the mount's folder
through a link is refused (PermissionDenied) and such links are left out of
listings, unless the mount sets ``follow_links``. The check resolves the
path through the kernel (one ``open(O_PATH)`` and a ``readlink`` of it), and
the call that follows goes through that descriptor: reads, stats, listings
and times through the object's own, changes (create, write, copy, rename,
delete) through its folder's, naming only the last part, which these calls
never follow. A link swapped in after the check is therefore never followed
(``openat2`` with ``RESOLVE_BENEATH`` is not in the os module); this backend
deletes, renames or replaces a link itself, never its target.

Users' home folders inside the mount are fences too (:meth:`fence`): a
path inside a home may not resolve outside that home, so a link
``alice/tobob -> ../bob`` does not hand alice bob's files.

Unicode: names reach this backend in one normalisation form
(``gateway.nameform.name_form``, NFC by default), but files made on the
host may be spelled otherwise (macOS tools write NFD). A path is used as
given when it exists so (no extra call for ASCII names); else each
non-ASCII part is looked up in its other canonical form, then among the
folder's names, so a file stored NFD is opened, renamed and deleted
through its NFC name. Listings show every name in the gateway's form. When
a folder holds the same name in both forms (twins), the name shows once
and any use of it is refused (Conflict): the gateway cannot tell which one
a client means, and never picks one silently.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat as _stat
import unicodedata
from contextlib import contextmanager, suppress
from typing import Any, BinaryIO, Callable, Iterable, Iterator

from backends.base import TEMPORARY_KINDS, Backend, Writer
from backends.errors import translated
from gateway import errors as E
from gateway.nameform import name_form
from gateway.types import RESERVED_PREFIX, Entry

__all__ = ["LocalBackend"]


class LocalBackend(Backend):
    """A folder on this machine's disk. ``follow_links`` lets paths follow
    symbolic links that lead outside the folder (refused by default)."""

    local = True

    def __init__(self, *args: Any, follow_links: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.follow_links = follow_links
        self._real_root: str | None = None
        #: home folder (backend path) → its resolved path, once it exists
        self._fences: dict[str, str | None] = {}

    def _inside(self, real: str) -> None:
        """Raises PermissionDenied when resolved path ``real`` lies outside
        the mount's folder."""
        if self._real_root is None:
            self._real_root = _resolved(self.root or "/")
        root = self._real_root
        if real != root and not real.startswith(root.rstrip("/") + "/"):
            raise E.PermissionDenied("leads outside the mount through a symbolic link")

    def fence(self, homes: Iterable[str]) -> None:
        root = (self.root or "/").rstrip("/")
        self._fences = {h.rstrip("/"): None for h in homes if h.rstrip("/") != root}

    def _fenced(self, path: str, real: str) -> None:
        """Raises PermissionDenied when ``path`` lies inside a user's home
        folder (the innermost one) and ``real``, where it resolves, does not."""
        fences = self._fences
        probe, root = path.rstrip("/"), (self.root or "/").rstrip("/")
        while len(probe) > len(root):
            if probe in fences:
                home = fences[probe]
                if home is None:
                    stored = self._stored(probe)
                    home = _resolved(stored)
                    if os.path.lexists(stored):
                        fences[probe] = home
                if real != home and not real.startswith(home.rstrip("/") + "/"):
                    raise E.PermissionDenied("leads outside the user's home folder through a symbolic link")
                return
            probe = os.path.dirname(probe)

    def _stored(self, path: str) -> str:
        """``path`` as the storage spells it (see the module's docstring): as
        given when it exists so or has no non-ASCII part; a part that does
        not exist in any spelling (a name to create) and what follows it
        are kept as given. Raises Conflict when a part exists in both
        canonical forms."""
        if path.isascii():
            return path
        root = (self.root or "/").rstrip("/")
        if not path.startswith(root + "/"):
            return path
        if os.path.lexists(path) and not _has_twin(path, root):
            return path
        form = name_form()
        other = "NFD" if form == "NFC" else "NFC"
        parts = path[len(root) + 1:].split("/")
        cur = root
        for i, part in enumerate(parts):
            given = f"{cur}/{part}"
            if part.isascii():
                cur = given
                continue
            twin = unicodedata.normalize(other, part)
            here = os.path.lexists(given)
            if twin != part and os.path.lexists(f"{cur}/{twin}"):
                if here:
                    raise E.Conflict(f"{part!r} is stored twice, in two Unicode forms; rename one on the storage")
                cur = f"{cur}/{twin}"
            elif here:
                cur = given
            else:
                found = _spelled(cur, part, form)
                if found is None:
                    return "/".join([cur, *parts[i:]])
                cur = f"{cur}/{found}"
        return cur

    def _open_checked(self, path: str) -> int:
        """An ``O_PATH`` descriptor of ``path`` (as stored, see
        :meth:`_stored`) once it is found inside the mount's folder: what is
        stat'ed, opened or listed through it is the object checked. The
        caller closes it. Raises PermissionDenied, Conflict, or the OSError
        of a missing path (its folder checked first)."""
        # Homes are fenced by name in the gateway's form, whatever the spelling on disk.
        named = path if path.isascii() else unicodedata.normalize(name_form(), path)
        path = self._stored(path)
        try:
            fd = os.open(path, os.O_PATH)
        except (FileNotFoundError, NotADirectoryError):
            if not self.follow_links:
                real = _resolved_missing(path)
                self._inside(real)
                if self._fences:
                    self._fenced(named, real)
            raise
        if not self.follow_links:
            self._vetted(fd, named)
        return fd

    def _vetted(self, fd: int, named: str) -> str:
        """Where descriptor ``fd`` of path ``named`` resolves, once found
        inside the mount's folder (and the home it lies in); closes ``fd``
        and raises PermissionDenied otherwise."""
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
            self._inside(real)
            if self._fences:
                self._fenced(named, real)
        except BaseException:
            os.close(fd)
            raise
        return real

    def _stat(self, path: str) -> os.stat_result:
        """The stat of the object ``path`` leads to, once checked."""
        fd = self._open_checked(path)
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)

    def _reopen(self, path: str, flags: int) -> int:
        """``path`` opened with ``flags`` (as os.open), the object checked."""
        checked = self._open_checked(path)
        try:
            return os.open(f"/proc/self/fd/{checked}", flags | os.O_CLOEXEC)
        finally:
            os.close(checked)

    # -- reads -------------------------------------------------------------

    def info(self, path: str) -> Entry:
        with translated():
            return _entry(path, self._stat(path))

    def info_or_folder(self, path: str) -> tuple[Entry | None, Entry | None]:
        """As :meth:`Backend.info_or_folder`; for a missing file its folder
        is checked and stat'ed through the one descriptor that resolves the
        missing path (where :meth:`info` of each would open it twice)."""
        with translated():
            named = path if path.isascii() else unicodedata.normalize(name_form(), path)
            stored = self._stored(path)
            try:
                fd = os.open(stored, os.O_PATH)
            except FileNotFoundError:
                parent, name = os.path.split(stored.rstrip("/"))
                if not parent or not name:
                    raise
                fd = os.open(parent, os.O_PATH)  # missing too: NotFound, as info's
                if not self.follow_links:
                    # Both checks info() of the path and of its folder would make.
                    real = self._vetted(fd, os.path.dirname(named))
                    try:
                        self._inside(os.path.join(real, name))
                        if self._fences:
                            self._fenced(named, os.path.join(real, name))
                    except BaseException:
                        os.close(fd)
                        raise
                try:
                    return None, _entry(os.path.dirname(path.rstrip("/")), os.fstat(fd))
                finally:
                    os.close(fd)
            if not self.follow_links:
                self._vetted(fd, named)
            try:
                return _entry(path, os.fstat(fd)), None
            finally:
                os.close(fd)

    def iterdir(self, path: str, shown_as: str | None = None) -> Iterator[Entry]:
        prefix = (path if shown_as is None else shown_as).rstrip("/") + "/"
        # Scanned through the folder's descriptor: each member's stat is then
        # one lookup (fstatat) instead of a walk of the whole path, which
        # took a fifth of a 20,000-entry listing.
        with translated():
            stored = self._stored(path)
            fd = self._reopen(stored, os.O_RDONLY | os.O_DIRECTORY)
        form = name_form()
        # Entries built by tuple.__new__: the named tuple's own __new__ is a
        # Python function (7% of a 20,000-entry PROPFIND's py-spy samples).
        new, is_dir = tuple.__new__, _stat.S_ISDIR
        try:
            with os.scandir(fd) as it:
                for d in it:
                    name = d.name
                    if name.startswith(RESERVED_PREFIX):
                        continue
                    if not name.isascii():
                        shown = unicodedata.normalize(form, name)
                        if shown != name:
                            if os.path.lexists(os.path.join(stored, shown)):
                                continue  # a twin: shown once, as the one already in form
                            name = shown
                    try:
                        st = self._stat(os.path.join(stored, d.name)) if d.is_symlink() else d.stat()
                    except (FileNotFoundError, E.PermissionDenied, E.Conflict):
                        continue
                    mode = st.st_mode
                    if is_dir(mode):
                        yield new(Entry, (name, prefix + name, True, 0, st.st_mtime, None, mode))
                    else:
                        yield new(Entry, (name, prefix + name, False, st.st_size, st.st_mtime, None, mode))
        finally:
            os.close(fd)

    def listing(self, path: str) -> list[Entry]:
        return list(self.iterdir(path))

    def open_read(self, path: str, offset: int = 0) -> BinaryIO:
        with translated():
            fd = self._reopen(path, os.O_RDONLY)
            try:
                f = os.fdopen(fd, "rb")  # noqa: SIM115 - the caller closes it
            except BaseException:  # a folder: fdopen refuses it and leaves the descriptor open
                os.close(fd)
                raise
            if offset:
                f.seek(offset)
        return f

    def open_with_entry(self, path: str, offset: int = 0) -> tuple[BinaryIO | None, Entry]:
        """One checked look-up: the object's stat and its opening are made
        through the same descriptor."""
        with translated():
            checked = self._open_checked(path)
            try:
                st = os.fstat(checked)
                if _stat.S_ISDIR(st.st_mode):
                    return None, _entry(path, st)
                fd = os.open(f"/proc/self/fd/{checked}", os.O_RDONLY | os.O_CLOEXEC)
            finally:
                os.close(checked)
            try:
                f = os.fdopen(fd, "rb")  # noqa: SIM115 - the caller closes it
            except BaseException:
                os.close(fd)
                raise
            if offset:
                f.seek(offset)
        return f, _entry(path, st)

    def remove_if_file(self, path: str) -> Entry:
        """One checked look-up of the folder: the member's stat and its
        removal are made through the folder's descriptor. A symbolic link
        is taken as :meth:`info` takes it (the object it leads to, checked),
        then removed itself as :meth:`remove` removes it."""
        with translated(), self._folder_of(path) as (folder, name):
            st = os.stat(name, dir_fd=folder, follow_symlinks=False)
            if _stat.S_ISLNK(st.st_mode):
                st = self._stat(path)
            if _stat.S_ISDIR(st.st_mode):
                return _entry(path, st)
            os.unlink(name, dir_fd=folder)
        self.invalidate(path)
        return _entry(path, st)

    @contextmanager
    def _folder_of(self, path: str) -> Iterator[tuple[int, str]]:
        """The checked descriptor of ``path``'s folder and ``path``'s last
        part, for a call relative to it (``dir_fd``). The mount's own folder
        is reached through its parent, which lies outside and is not checked.
        Raises PermissionDenied, or the OSError of a missing folder."""
        path = self._stored(path.rstrip("/") or "/")
        parent, name = os.path.split(path)
        if not name:
            raise E.PermissionDenied("the storage's root folder cannot be changed")
        if path == (self.root or "/"):
            fd = os.open(parent, os.O_PATH)
        else:
            fd = self._open_checked(parent)
        try:
            yield fd, name
        finally:
            os.close(fd)

    def _create_temp(self, path: str, temp_key: str | None) -> tuple[int, str, str]:
        """A new descriptor open for writing a temporary beside ``path``, the
        temporary's name in that folder (see :meth:`_place`) and where it is
        as the sweep sees it (:meth:`_temp_path`, worked out once); the
        temporary counts as being written (never swept) until it is placed
        or dropped."""
        tmp = os.path.basename(self._temp_name(path, temp_key))
        with self._folder_of(path) as (folder, _):
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(tmp, flags, 0o666, dir_fd=folder)
        where = self._temp_path(path, tmp)
        self._writing.add(where)
        return fd, tmp, where

    def _temp_path(self, path: str, tmp: str) -> str:
        """Where temporary ``tmp`` beside ``path`` is, as the sweep sees it."""
        folder = os.path.dirname(path)
        with suppress(E.GatewayError):
            folder = self._stored(folder)
        return os.path.join(folder, tmp)

    def _place(self, tmp: str, path: str, where: str) -> None:
        """Make temporary ``tmp`` (made by :meth:`_create_temp`, which
        answered ``where``) the file at ``path``."""
        with self._folder_of(path) as (folder, name):
            os.replace(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
        self._writing.discard(where)
        self.invalidate(path)

    def _drop_temp(self, tmp: str, path: str, where: str) -> None:
        """Remove temporary ``tmp`` beside ``path`` (``where``, as
        :meth:`_create_temp` answered); best effort, never raises (what
        cannot be removed keeps its reserved, hidden name, for the sweep to
        remove later)."""
        self._writing.discard(where)
        with suppress(OSError, E.GatewayError), self._folder_of(path) as (folder, _):
            os.unlink(tmp, dir_fd=folder)

    def open_write(self, path: str, offset: int = 0, temp_key: str | None = None) -> Writer:
        if offset:
            return self._open_continue(path, offset)
        with translated():
            fd, tmp, where = self._create_temp(path, temp_key)
            f = os.fdopen(fd, "wb")  # noqa: SIM115 - the Writer closes it

        def commit(fh: BinaryIO) -> Entry:
            try:
                fh.flush()
                st = os.fstat(fh.fileno())  # what the caller would stat next, without a walk of the path
                fh.close()
                self._place(tmp, path, where)
            except BaseException:
                with suppress(OSError):
                    fh.close()
                self._drop_temp(tmp, path, where)
                raise
            return Entry(os.path.basename(path), path, False, st.st_size, st.st_mtime, None, st.st_mode)

        def abort(fh: BinaryIO) -> None:
            try:
                fh.close()
            finally:
                self._drop_temp(tmp, path, where)

        return Writer(f, commit, abort)

    def _open_continue(self, path: str, offset: int) -> Writer:
        size = self.info(path).size
        if offset != size and not self.capabilities.random_write:
            return super()._open_continue(path, offset)
        with translated():
            f = os.fdopen(self._reopen(path, os.O_RDWR), "r+b")  # noqa: SIM115 - the Writer closes it
            f.seek(offset)

        def commit(fh: BinaryIO) -> None:
            fh.close()
            self.invalidate(path)

        return Writer(f, commit, lambda fh: fh.close())

    def mkdir(self, path: str, exist_ok: bool = False) -> None:
        with translated(), self._folder_of(path) as (folder, name):
            try:
                os.mkdir(name, dir_fd=folder)
            except FileExistsError:
                if not (exist_ok and _stat.S_ISDIR(os.stat(name, dir_fd=folder).st_mode)):
                    raise
                return
        self.invalidate(path)

    def remove(self, path: str, missing_ok: bool = False) -> None:
        self._delete(os.unlink, path, missing_ok)

    def rmdir(self, path: str, missing_ok: bool = False) -> None:
        self._delete(os.rmdir, path, missing_ok)

    def _delete(self, call: Callable[..., None], path: str, missing_ok: bool) -> None:
        try:
            with translated(), self._folder_of(path) as (folder, name):
                call(name, dir_fd=folder)
        except E.NotFound:
            if not missing_ok:
                raise
            return
        self.invalidate(path)

    def rm_tree(self, path: str) -> None:
        """Delete ``path`` and everything below it; missing is fine. Links
        inside are unlinked, never followed. Idempotent."""
        try:
            with translated(), self._folder_of(path) as (folder, name):
                if _stat.S_ISDIR(os.lstat(name, dir_fd=folder).st_mode):
                    shutil.rmtree(name, dir_fd=folder)
                else:
                    os.unlink(name, dir_fd=folder)
        except E.NotFound:
            return
        self.invalidate(path)

    def rename(self, src: str, dst: str) -> None:
        with translated(), self._folder_of(src) as (src_folder, src_name), \
                self._folder_of(dst) as (dst_folder, dst_name):
            os.rename(src_name, dst_name, src_dir_fd=src_folder, dst_dir_fd=dst_folder)
        self.invalidate(src)
        self.invalidate(dst)

    def copy_file(self, src: str, dst: str, size: int | None = None) -> int:
        return self.copy_from(self, src, dst, expected_size=size)

    def copy_from(self, source: LocalBackend, src: str, dst: str, temp_key: str | None = None,
                  on_bytes: Callable[[int], None] | None = None, check: Callable[[], None] | None = None,
                  expected_size: int | None = None) -> int:
        """Copy file ``src`` of ``source`` (this backend or another local
        disk, each path checked against its own mount) to ``dst`` here, in
        the kernel, replacing ``dst`` only once complete; returns its size.
        ``temp_key`` names the temporary, as for :meth:`open_write`;
        ``on_bytes(n)`` reports each block copied and ``check()``, called
        before each, may raise to abandon the copy (``dst`` is then as it
        was). Raises BackendError, placing nothing, when the copy's size is
        not ``expected_size`` (the source changed while it was copied). The
        copy keeps the source's access and modification times (as ``cp -p``),
        so it appears in place with them."""
        with translated():
            reader = source._reopen(src, os.O_RDONLY)
        try:
            with translated():
                writer, tmp, where = self._create_temp(dst, temp_key)
            try:
                try:
                    size = _copy_descriptor(reader, writer, on_bytes, check)
                    with translated():
                        st = os.fstat(reader)
                        os.utime(writer, ns=(st.st_atime_ns, st.st_mtime_ns))
                finally:
                    os.close(writer)
                if expected_size is not None and size != expected_size:
                    raise E.BackendError(f"copy of {src} is {size} bytes, source has {expected_size}; not committed")
                with translated():
                    self._place(tmp, dst, where)
            except BaseException:
                self._drop_temp(tmp, dst, where)
                raise
        finally:
            os.close(reader)
        return size

    def set_mtime(self, path: str, mtime: float) -> bool:
        with translated():
            fd = self._open_checked(path)
            try:
                os.utime(f"/proc/self/fd/{fd}", (mtime, mtime))
            finally:
                os.close(fd)
        self.invalidate(path)
        return True

    def set_mtime_checked(self, path: str, mtime: float, checks: Callable[[Entry], None]) -> Entry | None:
        """As :meth:`Backend.set_mtime_checked`, through one checked
        descriptor: stat'ed, checked, its time set, stat'ed again."""
        with translated():
            fd = self._open_checked(path)
            try:
                checks(_entry(path, os.fstat(fd)))
                os.utime(f"/proc/self/fd/{fd}", (mtime, mtime))
                after = _entry(path, os.fstat(fd))
            finally:
                os.close(fd)
        self.invalidate(path)
        return after

    def temporaries(self, stop: Callable[[], bool] = lambda: False) -> Iterator[Entry]:
        """As :meth:`Backend.temporaries`, through the os module; symbolic
        links are not followed (a link with a temporary's name is one)."""
        stack = [self.root or "/"]
        while stack and not stop():
            folder = stack.pop()
            try:
                it = os.scandir(folder)
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                continue
            with it:
                for d in it:
                    try:
                        is_dir = d.is_dir(follow_symlinks=False)
                        if d.name.startswith(TEMPORARY_KINDS):
                            if d.path not in self._writing:
                                yield self._local_temporary(d.path, d.name, is_dir)
                        elif is_dir:
                            stack.append(d.path)
                    except FileNotFoundError:  # removed meanwhile
                        continue

    @staticmethod
    def _local_temporary(path: str, name: str, is_dir: bool) -> Entry:
        st = os.lstat(path)
        size, mtime = (0 if is_dir else st.st_size), st.st_mtime
        if is_dir:
            for top, dirs, files in os.walk(path):
                for n in dirs + files:
                    with suppress(FileNotFoundError):
                        s = os.lstat(os.path.join(top, n))
                        mtime = max(mtime, s.st_mtime)
                        size += 0 if _stat.S_ISDIR(s.st_mode) else s.st_size
        return Entry(name, path, is_dir, size, mtime, None, st.st_mode)

    def forget(self, path: str | None = None) -> None:
        """Nothing is cached."""

    def disk_usage(self) -> tuple[int, int] | None:
        try:
            u = shutil.disk_usage(self.root or "/")
        except OSError:
            return None
        return u.total, u.free


def _entry(path: str, st: os.stat_result) -> Entry:
    is_dir = _stat.S_ISDIR(st.st_mode)
    return Entry(os.path.basename(path), path, is_dir, 0 if is_dir else st.st_size, st.st_mtime, None, st.st_mode)


def _has_twin(path: str, root: str) -> bool:
    """Whether a non-ASCII part of existing ``path`` (below ``root``) also
    exists in the other canonical Unicode form."""
    other = "NFD" if name_form() == "NFC" else "NFC"
    cur = root
    for part in path[len(root) + 1:].split("/"):
        if not part.isascii():
            twin = unicodedata.normalize(other, part)
            if twin != part and os.path.lexists(f"{cur}/{twin}"):
                return True
        cur = f"{cur}/{part}"
    return False


def _spelled(folder: str, name: str, form: str) -> str | None:
    """The name in ``folder`` that normalises to ``name`` (in ``form``), or None."""
    try:
        with os.scandir(folder) as it:
            for d in it:
                if not d.name.isascii() and unicodedata.normalize(form, d.name) == name:
                    return d.name
    except OSError:
        pass
    return None


def _resolved(path: str) -> str:
    """``path`` with every symbolic link on it followed, as the kernel
    resolves it (a missing last part is kept as it is written)."""
    try:
        fd = os.open(path, os.O_PATH)
    except (FileNotFoundError, NotADirectoryError):
        return _resolved_missing(path)
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def _resolved_missing(path: str) -> str:
    """As :func:`_resolved`, for a ``path`` that does not exist: its folder
    resolved, its last part as written."""
    parent, name = os.path.split(path.rstrip("/"))
    return os.path.join(_resolved(parent), name) if parent and parent != path else path


#: Bytes per kernel copy call: a large file's copy reports progress and can
#: be stopped between blocks.
COPY_BLOCK = 64 << 20


def _copy_descriptor(reader: int, writer: int, on_bytes: Callable[[int], None] | None = None,
                     check: Callable[[], None] | None = None) -> int:
    """Copy what ``reader`` holds to ``writer`` inside the kernel
    (``copy_file_range``: a reflink where the filesystem shares blocks,
    ``sendfile`` where the kernel refuses it across filesystems); returns
    the bytes copied. What ``check`` raises passes untranslated."""
    total, sendfile = 0, False
    while True:
        if check:
            check()
        with translated():
            try:
                n = (os.sendfile(writer, reader, None, COPY_BLOCK) if sendfile
                     else os.copy_file_range(reader, writer, COPY_BLOCK))
            except OSError as exc:
                if sendfile or total or exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                sendfile = True
                continue
        if not n:
            return total
        total += n
        if on_bytes:
            on_bytes(n)

"""What ``ssh gateway <command>`` runs.

- ``jobs``, ``job <id>``, ``cancel <id>``, ``stop <id>``: a window on the
  user's own jobs (all jobs for admins);
- ``md5sum``, ``sha1sum``, ``sha224sum``, ``sha256sum``, ``sha384sum``,
  ``sha512sum`` on paths of the user's tree (or ``-``/none: the command's
  input), printed as GNU coreutils does (``<hex>  <path>``, a leading
  backslash when the name holds one or a newline) with coreutils' error
  lines and exit status 1 when a file could not be read. rclone's sftp
  backend (and sshfs) get checksums this way: it probes each command with
  an empty input, then runs ``md5sum /path`` with the path escaped for a
  POSIX shell. The digests come from the core (``Operations.hash``: the
  one kept at upload, or computed by reading the file, authorised as a
  download);
- ``echo``: rclone's shell detection sends ``echo ${ShellId}%ComSpec%`` and
  takes ``%ComSpec%`` for a POSIX shell.

The command line is split into words as a POSIX shell would (quotes,
backslashes, ``$NAME`` expanding to nothing: there is no environment).
Pipes, redirections, command substitution, wildcards and several commands
are refused: there is no shell. Everything else is refused with a message
that says what is available. (Not ``shlex``: its words come back unquoted,
so rclone's escaped ``\\$`` would be expanded and a quoted or escaped ``*``
or ``[`` in a file name could not be told from a wildcard.)
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from gateway import errors as E
from gateway.ops import new_hasher
from gateway.types import Session
from protocols.sftp.errors import strerror

__all__ = ["REFUSAL", "CHECKSUM_COMMANDS", "execute", "run_command", "shell_words"]

REFUSAL = ("only SFTP/scp and the commands jobs, job <id>, cancel <id>, stop <id>, retry <id> and abandon <id> "
           "(admins), md5sum, sha1sum, sha224sum, sha256sum, sha384sum, sha512sum and echo are available")

#: command → hashlib algorithm.
CHECKSUM_COMMANDS = {"md5sum": "md5", "sha1sum": "sha1", "sha224sum": "sha224", "sha256sum": "sha256",
                     "sha384sum": "sha384", "sha512sum": "sha512"}

#: Characters a shell gives a meaning this gateway does not offer, unquoted.
_SPECIAL = set("|&;<>()`*?[~\n")
_NAME_START = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
_NAME = _NAME_START + "0123456789"
#: Bytes of the command's input read at once when hashing it.
_STDIN_BLOCK = 1 << 16


def shell_words(line: str) -> list[str]:
    """The words of ``line`` as a POSIX shell splits them, with ``$NAME``
    and ``${NAME}`` expanding to nothing. Raises ValueError for what needs a
    shell (pipes, redirections, ``;``, substitutions, wildcards, unbalanced
    quotes)."""
    words: list[str] = []
    word: list[str] = []
    started = False
    i, n = 0, len(line)

    def variable(i: int) -> int:
        """Skip the variable reference at ``line[i] == "$"``; the index after
        it. A ``$`` that starts none stays (returns i)."""
        if line.startswith("${", i):
            end = line.find("}", i)
            if end < 0 or not line[i + 2:end] or any(c not in _NAME for c in line[i + 2:end]):
                raise ValueError("bad substitution")
            return end + 1
        if i + 1 < n and line[i + 1] == "(":
            raise ValueError("command substitution is not supported")
        j = i + 1
        if j < n and line[j] in _NAME_START:
            while j < n and line[j] in _NAME:
                j += 1
            return j
        return i

    while i < n:
        c = line[i]
        if c in " \t":
            if started:
                words.append("".join(word))
                word, started = [], False
            i += 1
            continue
        started = True
        if c == "\\":
            if i + 1 < n and line[i + 1] != "\n":
                word.append(line[i + 1])
            i += 2
        elif c == "'":
            end = line.find("'", i + 1)
            if end < 0:
                raise ValueError("unterminated quoted string")
            word.append(line[i + 1:end])
            i = end + 1
        elif c == '"':
            i += 1
            while True:
                if i >= n:
                    raise ValueError("unterminated quoted string")
                c = line[i]
                if c == '"':
                    i += 1
                    break
                if c == "\\" and i + 1 < n and line[i + 1] in '$`"\\\n':
                    if line[i + 1] != "\n":
                        word.append(line[i + 1])
                    i += 2
                elif c == "`":
                    raise ValueError("command substitution is not supported")
                elif c == "$" and (j := variable(i)) != i:
                    i = j
                else:
                    word.append(c)
                    i += 1
        elif c == "$" and (j := variable(i)) != i:
            i = j
        elif c in _SPECIAL:
            raise ValueError(f"{c!r} needs a shell, and there is none")
        else:
            word.append(c)
            i += 1
    if started:
        words.append("".join(word))
    return words


def run_command(ops: Any, session: Session, words: list[str]) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of a job command. Blocking: run it in a
    worker thread."""
    name, args = (words[0], words[1:]) if words else ("", [])
    try:
        if name == "jobs" and not args:
            return 0, _table([ops.public_job(session, job) for job in ops.list_jobs(session)]), ""
        actions = {"job": ops.get_job, "cancel": ops.cancel_job, "stop": ops.stop_job, "retry": ops.retry_job,
                   "abandon": ops.abandon_job}
        if name in actions and len(args) == 1:
            return 0, _details(ops.public_job(session, actions[name](session, args[0]))), ""
    except E.GatewayError as exc:
        return 1, "", f"{name}: {exc.message}\n"
    return 1, "", f"gateway: {REFUSAL}\n"


async def execute(ops: Any, session: Session, command: str | None, stdin: Any,
                  call: Callable[..., Awaitable[Any]]) -> tuple[int, bytes, bytes]:
    """(exit status, stdout, stderr) of ``command``. ``stdin``: the
    channel's reader (bytes); ``call(fn, *args)`` runs a blocking core call
    in a worker thread."""
    try:
        words = shell_words(command or "")
    except ValueError as exc:
        return 1, b"", f"gateway: {exc}; {REFUSAL}\n".encode()
    if words and words[0] in CHECKSUM_COMMANDS:
        return await _checksums(ops, session, words[0], words[1:], stdin, call)
    if words and words[0] == "echo":
        args = words[1:]
        newline = "\n"
        if args[:1] == ["-n"]:
            args, newline = args[1:], ""
        return 0, (" ".join(args) + newline).encode(), b""
    status, out, err = await call(run_command, ops, session, words)
    return status, out.encode(), err.encode()


async def _checksums(ops: Any, session: Session, name: str, args: list[str], stdin: Any,
                     call: Callable[..., Awaitable[Any]]) -> tuple[int, bytes, bytes]:
    algorithm = CHECKSUM_COMMANDS[name]
    if args[:1] == ["--"]:
        args = args[1:]
    elif any(a.startswith("-") and a != "-" for a in args):
        bad = next(a for a in args if a.startswith("-") and a != "-")
        return 1, b"", (f"{name}: unrecognized option '{bad}' (this server takes only paths)\n"
                        f"Try '{name} --help' for more information.\n").encode()
    out: list[str] = []
    err: list[str] = []
    for path in args or ["-"]:
        if path == "-":
            hasher = new_hasher(algorithm)
            while block := await stdin.read(_STDIN_BLOCK):
                hasher.update(block)
            digest = hasher.hexdigest()
        else:
            try:
                digest = await call(ops.hash, session, path, algorithm)
            except E.GatewayError as exc:
                err.append(f"{name}: {path}: {strerror(exc)}\n")
                continue
        out.append(_line(digest, path))
    return (1 if err else 0), "".join(out).encode("utf-8", "surrogateescape"), "".join(err).encode()


def _line(digest: str, name: str) -> str:
    """coreutils' line: a name with a backslash or a newline is escaped and
    the line starts with a backslash."""
    if "\\" in name or "\n" in name:
        return "\\" + digest + "  " + name.replace("\\", "\\\\").replace("\n", "\\n") + "\n"
    return f"{digest}  {name}\n"


def _table(jobs: list[dict]) -> str:
    if not jobs:
        return "no jobs\n"
    rows = [("ID", "STATE", "OPERATION", "DONE", "FROM", "TO")]
    rows += [(j["id"], j["state"] + (",stalled" if j.get("stalled") else ""), j["operation"],
              f"{j['percentageComplete']:.1f}%", j["from"] or "-",
              j["to"] or "-") for j in jobs]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] + "\n" for r in rows)


def _details(job: dict) -> str:
    return "".join(f"{key}: {'-' if value is None else value}\n" for key, value in job.items())

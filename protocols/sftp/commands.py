"""What ``ssh gateway <command>`` runs: a window on the user's own jobs
(all jobs for admins). Everything else is refused with a message that says
what is available."""

from __future__ import annotations

from typing import Any

from gateway import errors as E
from gateway.types import Session

__all__ = ["REFUSAL", "run_command"]

REFUSAL = ("only SFTP/scp and the commands jobs, job <id>, cancel <id>, stop <id>, retry <id> and "
           "abandon <id> (admins) are available")


def run_command(ops: Any, session: Session, command: str | None) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``command``. Blocking: run it in a
    worker thread."""
    words = (command or "").split()
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

"""gateway.auth: argon2id passwords, key logins, bans, the first-start admin."""

from __future__ import annotations

import logging
import threading
import tomllib

import asyncssh
import pytest
from argon2 import PasswordHasher

from gateway.auth import Authenticator, CachedLogins, hash_password
from gateway.config import Auth, UserConfig, parse_config
from gateway.errors import AlreadyExists, AuthenticationFailed, LoginBanned
from gateway.users import PERMISSIONS, User


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def alice_hash() -> str:
    return hash_password("correct horse")


@pytest.fixture(scope="module")
def key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519", comment="alice@laptop")


def make(tmp_path, users, clock=None, **auth) -> Authenticator:
    return Authenticator(users, Auth(**auth), tmp_path / "var", clock=clock or FakeClock())


def test_hash_is_argon2id_and_verifies():
    h = hash_password("s3cret")
    assert h.startswith("$argon2id$v=19$m=7168,t=5,p=1$")  # an OWASP argon2id profile
    assert PasswordHasher().verify(h, "s3cret")
    assert hash_password("s3cret") != h  # salted


def test_hashes_of_other_argon2_parameters_still_log_in(tmp_path):
    old = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4).hash("correct horse")
    auth = make(tmp_path, [User("alice", password_hash=old)])
    assert auth.login_password("alice", "correct horse", "127.0.0.1:5000").name == "alice"


def test_password_login(tmp_path, alice_hash):
    auth = make(tmp_path, [User("alice", password_hash=alice_hash)])
    assert auth.login_password("alice", "correct horse", "127.0.0.1:5000").name == "alice"


@pytest.mark.parametrize("name, password", [("alice", "wrong"), ("bob", "correct horse"), ("alice", "")])
def test_wrong_password_or_unknown_user_is_login_incorrect(tmp_path, alice_hash, name, password):
    auth = make(tmp_path, [User("alice", password_hash=alice_hash), User("nopw")])
    with pytest.raises(AuthenticationFailed, match="^login incorrect$") as info:
        auth.login_password(name, password, "127.0.0.1")
    assert not isinstance(info.value, LoginBanned)


def test_a_user_without_password_cannot_log_in_with_one(tmp_path):
    auth = make(tmp_path, [User("nopw")])
    with pytest.raises(AuthenticationFailed):
        auth.login_password("nopw", "", "127.0.0.1")


def test_key_login_matches_type_and_blob_not_comment(tmp_path, key):
    line = key.export_public_key().decode()
    auth = make(tmp_path, [User("alice", authorized_keys=[line])])
    other_comment = " ".join(line.split()[:2]) + " somewhere-else"
    assert auth.login_key("alice", other_comment, "10.0.0.1").name == "alice"
    assert auth.login_key("alice", line.encode(), "10.0.0.1").name == "alice"
    assert auth.login_key("alice", key.public_data, "10.0.0.1").name == "alice"  # raw wire blob


def test_wrong_or_garbage_key_fails(tmp_path, key):
    auth = make(tmp_path, [User("alice", authorized_keys=[key.export_public_key().decode()])])
    stranger = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    for attempt, who in ((stranger, "alice"), ("not a key", "alice"), (key.public_data, "bob")):
        with pytest.raises(AuthenticationFailed, match="login incorrect"):
            auth.login_key(who, attempt, "10.0.0.1")


def test_ban_after_max_failures_from_one_address_only(tmp_path, alice_hash, caplog):
    clock = FakeClock()
    auth = make(tmp_path, [User("alice", password_hash=alice_hash)], clock, max_failures=3, window_s=60, ban_s=100)
    caplog.set_level(logging.WARNING, logger="gateway.auth")
    for port in (1, 2, 3):
        with pytest.raises(AuthenticationFailed) as info:
            auth.login_password("alice", "guess", f"192.0.2.7:{port}")
        assert not isinstance(info.value, LoginBanned)
    # Banned now: even the right password is refused without being tried.
    with pytest.raises(LoginBanned, match=r"^too many failed logins from 192\.0\.2\.7; try again in 100 s$"):
        auth.login_password("alice", "correct horse", "192.0.2.7:4")
    clock.advance(40)
    with pytest.raises(LoginBanned, match="try again in 60 s"):
        auth.login_key("alice", "ssh-ed25519 AAAA", "192.0.2.7")
    assert auth.is_banned("192.0.2.7:9")
    # Another address is not affected, and its success does not lift the ban.
    assert auth.login_password("alice", "correct horse", "[2001:db8::1]:22").name == "alice"
    assert auth.is_banned("192.0.2.7")

    messages = [r.getMessage() for r in caplog.records if r.name == "gateway.auth"]
    assert sum("login failed: user 'alice' from 192.0.2.7" in m for m in messages) == 3
    assert any(m.startswith("banning 192.0.2.7 for 100 s after 3 failed logins") for m in messages)


def test_ban_expires(tmp_path, alice_hash):
    clock = FakeClock()
    auth = make(tmp_path, [User("alice", password_hash=alice_hash)], clock, max_failures=2, window_s=60, ban_s=100)
    for _ in range(2):
        with pytest.raises(AuthenticationFailed):
            auth.login_password("alice", "guess", "192.0.2.7")
    clock.advance(99.5)
    with pytest.raises(LoginBanned, match="try again in 1 s"):
        auth.login_password("alice", "correct horse", "192.0.2.7")
    clock.advance(0.5)
    assert auth.login_password("alice", "correct horse", "192.0.2.7").name == "alice"
    # After the ban the count starts afresh: one failure is not a new ban.
    with pytest.raises(AuthenticationFailed) as info:
        auth.login_password("alice", "guess", "192.0.2.7")
    assert not isinstance(info.value, LoginBanned)
    assert auth.login_password("alice", "correct horse", "192.0.2.7").name == "alice"


def test_failures_outside_the_window_do_not_add_up(tmp_path, alice_hash):
    clock = FakeClock()
    auth = make(tmp_path, [User("alice", password_hash=alice_hash)], clock, max_failures=3, window_s=60, ban_s=100)
    for _ in range(6):
        with pytest.raises(AuthenticationFailed) as info:
            auth.login_password("alice", "guess", "192.0.2.7")
        assert not isinstance(info.value, LoginBanned)
        clock.advance(31)  # never three within 60 s
    assert not auth.is_banned("192.0.2.7")


def test_concurrent_failures_are_all_counted(tmp_path, alice_hash):
    auth = make(tmp_path, [User("alice", password_hash=alice_hash)], max_failures=8, window_s=60, ban_s=100)
    errors: list[BaseException] = []

    def attempt() -> None:
        try:
            auth.login_password("alice", "guess", "192.0.2.9")
        except AuthenticationFailed as e:
            errors.append(e)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 8 and not any(isinstance(e, LoginBanned) for e in errors)
    assert auth.is_banned("192.0.2.9")


def test_ensure_admin_creates_once_and_stores_only_the_hash(tmp_path):
    auth = make(tmp_path, [])
    password = auth.ensure_admin()
    assert password and len(password) >= 16
    assert auth.ensure_admin() is None

    text = (tmp_path / "var" / "users.toml").read_text()
    assert password not in text
    (stored,) = tomllib.loads(text)["users"]
    assert stored["name"] == "admin" and stored["admin"] is True
    assert stored["password_hash"].startswith("$argon2id$")

    admin = auth.login_password("admin", password, "127.0.0.1")
    assert admin.admin and admin.home == "/" and admin.permissions == frozenset(PERMISSIONS)

    again = make(tmp_path, [])  # a restart reads the file
    assert again.ensure_admin() is None
    assert again.login_password("admin", password, "127.0.0.1").admin
    assert [u.name for u in again.all()] == ["admin"]


def test_no_admin_is_created_when_the_config_has_users(tmp_path, alice_hash):
    auth = make(tmp_path, [User("alice", password_hash=alice_hash)])
    assert auth.ensure_admin() is None
    assert not (tmp_path / "var" / "users.toml").exists()


def test_added_users_merge_with_config_users_and_duplicates_are_refused(tmp_path, alice_hash):
    auth = make(tmp_path, [User("alice", password_hash=alice_hash)])
    auth.add_user(UserConfig(name="bob", password_hash=hash_password("pw"), home="/bob",
                             permissions=["list", "download"], path_permissions={"/in": ["upload"]}))
    for name in ("alice", "bob"):
        with pytest.raises(AlreadyExists):
            auth.add_user(UserConfig(name=name))
    assert [u.name for u in auth.all()] == ["alice", "bob"]
    bob = make(tmp_path, []).get("bob")  # round trip through users.toml
    assert bob is not None and bob.home == "/bob"
    assert bob.permissions == {"list", "download"} and bob.path_permissions == {"/in": {"upload"}}
    assert auth.get("carol") is None


def test_a_users_file_written_by_another_process_is_picked_up(tmp_path, alice_hash):
    server = make(tmp_path, [User("alice", password_hash=alice_hash)])
    make(tmp_path, []).add_user(UserConfig(name="bob", password_hash=hash_password("pw")))
    assert server.login_password("bob", "pw", "127.0.0.1").name == "bob"


def test_an_outdated_hash_is_upgraded_on_login(tmp_path):
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("pw")
    auth = make(tmp_path, [])
    auth.add_user(UserConfig(name="old", password_hash=weak))
    auth.login_password("old", "pw", "127.0.0.1")
    new_hash = tomllib.loads((tmp_path / "var" / "users.toml").read_text())["users"][0]["password_hash"]
    assert new_hash.startswith("$argon2id$v=19$m=7168,t=5,p=1$")
    assert make(tmp_path, []).login_password("old", "pw", "127.0.0.1").name == "old"


def test_from_config(tmp_path, alice_hash):
    cfg = parse_config({
        "server": {"state_dir": str(tmp_path / "st")},
        "auth": {"max_failures": 1},
        "users": [{"name": "alice", "password_hash": alice_hash}],
    })
    auth = Authenticator.from_config(cfg)
    assert auth.login_password("alice", "correct horse", "127.0.0.1").name == "alice"
    with pytest.raises(AuthenticationFailed):
        auth.login_password("alice", "x", "192.0.2.1")
    with pytest.raises(LoginBanned):
        auth.login_password("alice", "correct horse", "192.0.2.1")


def test_key_probes_do_not_ban_but_a_failed_connection_counts_once(tmp_path, key):
    auth = make(tmp_path, [User("alice", authorized_keys=[key.export_public_key().decode()])], max_failures=2)
    strangers = [asyncssh.generate_private_key("ssh-ed25519").public_data for _ in range(6)]
    for blob in strangers:  # an SSH client offering every key it holds
        with pytest.raises(AuthenticationFailed):
            auth.login_key("alice", blob, "192.0.2.9", count_failure=False)
    assert not auth.is_banned("192.0.2.9")
    assert auth.login_key("alice", key.public_data, "192.0.2.9").name == "alice"
    auth.record_failure("alice", "192.0.2.9:5", "key")
    auth.record_failure("alice", "192.0.2.9:6", "key")
    assert auth.is_banned("192.0.2.9")


def test_a_kept_login_holds_until_the_user_changes_or_the_cache_clears(tmp_path, alice_hash):
    """CachedLogins.recall gives what a front end keeps (an HTTP connection);
    user_of says whether it still holds, at every request."""
    auth = make(tmp_path, [], max_failures=1)
    auth.add_user(UserConfig(name="alice", password_hash=alice_hash))
    logins = CachedLogins(auth)
    assert logins.recall("alice", "correct horse") is None
    logins.login("alice", "correct horse", "10.0.0.1:1")
    kept = logins.recall("alice", "correct horse")
    assert kept is not None and kept.name == "alice" and "correct horse" not in repr(kept)
    assert logins.user_of(kept, "10.0.0.1:2").name == "alice"
    logins.clear()
    assert logins.user_of(kept, "10.0.0.1:2") is None
    logins.login("alice", "correct horse", "10.0.0.1:1")
    kept = logins.recall("alice", "correct horse")
    auth.update_user("alice", lambda u: setattr(u, "password_hash", hash_password("new")))
    assert logins.user_of(kept, "10.0.0.1:2") is None
    auth.update_user("alice", lambda u: setattr(u, "password_hash", alice_hash))
    assert logins.user_of(kept, "10.0.0.1:2").name == "alice"  # the hash it was checked against
    auth.record_failure("alice", "10.0.0.1:3", "password")
    with pytest.raises(LoginBanned):
        logins.user_of(kept, "10.0.0.1:2")
    assert logins.user_of(kept, "10.0.0.2:2").name == "alice"
    auth.remove_user("alice")
    assert logins.user_of(kept, "10.0.0.2:2") is None

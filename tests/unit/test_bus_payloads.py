"""The bus's coalescing and NOTIFY payloads (gateway.bus): what one node
sends the others stays under PostgreSQL's 8000 bytes and never says less
than what changed."""

from gateway.bus import MAX_PATHS_PER_MOUNT, MAX_PAYLOAD, Change, LocalBus, decode, encode


def test_a_change_round_trips():
    c = Change(jobs=True, wake={"copy"}, users=True)
    c.add_path("/r", "/r/a.txt")
    c.add_path("/", None)
    origin, back = decode(encode("n1", c)[0])
    assert origin == "n1"
    assert back.paths == {"/r": {"/r/a.txt"}, "/": None} and back.jobs and back.users and back.wake == {"copy"}


def test_many_paths_of_a_mount_become_the_whole_mount():
    c = Change()
    for i in range(MAX_PATHS_PER_MOUNT + 1):
        c.add_path("/r", f"/r/f{i}")
    assert c.paths == {"/r": None}
    c.add_path("/r", "/r/more")  # stays "anything"
    assert c.paths == {"/r": None}


def test_a_payload_too_long_drops_paths_for_whole_mounts_and_stays_under_the_limit():
    c = Change(jobs=True)
    long = "x" * 3000
    for m in ("/a", "/b", "/c"):
        c.add_path(m, f"{m}/{long}")
    c.add_path("/small", "/small/y")
    payloads = encode("n1", c)
    assert all(len(p.encode()) <= MAX_PAYLOAD for p in payloads)
    merged = Change()
    for p in payloads:
        merged.merge(decode(p)[1])
    assert merged.jobs
    for m in ("/a", "/b", "/c"):  # said at least as broadly as it changed
        assert m in merged.paths and (merged.paths[m] is None or merged.paths[m] == {f"{m}/{long}"})
    assert merged.paths["/small"] in (None, {"/small/y"})


def test_a_payload_with_very_many_mounts_is_split():
    c = Change()
    for i in range(400):
        c.add_path(f"/mount-with-a-rather-long-name-{i:04}", None)
    payloads = encode("n1", c)
    assert len(payloads) > 1 and all(len(p.encode()) <= MAX_PAYLOAD for p in payloads)
    merged = Change()
    for p in payloads:
        merged.merge(decode(p)[1])
    assert set(merged.paths) == set(c.paths)


def test_merge_keeps_everything():
    a, b = Change(wake={"copy"}), Change(jobs=True, wake={"move"})
    b.add_path("/r", "/r/x")
    a.merge(b)
    assert a.wake == {"copy", "move"} and a.jobs and a.paths == {"/r": {"/r/x"}} and a


def test_the_local_bus_is_always_trusted_and_sends_nothing():
    bus = LocalBus()
    bus.publish(Change(jobs=True))
    assert bus.trusted and bus.stamp() == bus.stamp()

"""The one rule for replies that carry a user's file (gateway.webcontent):
which types a browser may show, and the RFC 6266 names of the others. The
replies themselves: tests/api/test_web_origin.py."""

from gateway.webcontent import CONTENT_POLICY, attachment, content_headers, is_inline


def test_the_one_rule_for_types_and_names() -> None:
    assert not is_inline("text/html; charset=utf-8") and not is_inline("image/svg+xml")
    assert not is_inline("application/xhtml+xml") and not is_inline("text/xml")
    assert not is_inline("text/javascript") and not is_inline("application/octet-stream")
    assert is_inline("TEXT/PLAIN; charset=utf-8") and is_inline("image/png") and is_inline("application/pdf")
    assert not is_inline("video/mp4") and not is_inline("audio/x-wav")  # see INLINE_TYPES
    assert attachment("a.html") == "attachment; filename=\"a.html\"; filename*=UTF-8''a.html"
    assert attachment("\r\n.svg") == "attachment; filename=\"__.svg\"; filename*=UTF-8''%0D%0A.svg"
    assert attachment('日本\\";.svg').endswith("filename*=UTF-8''%E6%97%A5%E6%9C%AC%5C%22%3B.svg")
    assert [k for k, _ in content_headers("n.txt", "text/plain")] == ["X-Content-Type-Options",
                                                                       "Content-Security-Policy"]
    assert dict(content_headers("a.svg", "image/svg+xml"))["Content-Security-Policy"] == CONTENT_POLICY
    assert CONTENT_POLICY.startswith("sandbox;") and "default-src 'none'" in CONTENT_POLICY

import pytest

from skip.errors import REASONS, ParseError, SkipError, describe


def test_reason_codes_are_stable_identifiers():
    for code, text in REASONS.items():
        assert code.isidentifier() and code == code.lower()
        assert text and not text.endswith(".")


def test_error_carries_reason_and_detail():
    err = ParseError("truncated", "IPv4 header needs 20 bytes, got 3")
    assert isinstance(err, SkipError)
    assert err.reason == "truncated"
    assert "got 3" in str(err)
    assert describe("truncated") == REASONS["truncated"]


def test_unlisted_reason_is_a_programming_error():
    with pytest.raises(ValueError, match="unlisted reason"):
        SkipError("no_such_code")

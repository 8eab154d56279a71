"""Message bytes to a Post: field-level refusals, nesting bounds, surrogates, padding, caps."""

from __future__ import annotations

import json

import pytest

from contracts.decoding import (
    DecodedPost,
    PostLimits,
    check_depth,
    decode_post,
    replace_surrogates,
)
from contracts.errors import PostDecodeError, PostValidationError, Stage
from contracts.records import InputChangeKind


def nested(depth: int) -> bytes:
    """A post whose meta nests `depth` objects deep (the post itself is level 1)."""
    return b'{"id": "deep", "meta": ' + b'{"a": ' * (depth - 1) + b"1" + b"}" * (depth - 1) + b"}"


def test_post_without_id_is_refused_naming_the_field():
    with pytest.raises(PostValidationError) as err:
        decode_post(b'{"text": "hi"}')
    assert err.value.reason == "id: Field required"
    assert err.value.stage is Stage.VALIDATE


def test_post_with_non_list_images_is_refused_naming_the_field():
    with pytest.raises(PostValidationError) as err:
        decode_post(b'{"id": "p", "images": "cat.jpg"}')
    assert err.value.reason.startswith("images: Input should be a valid list")


def test_image_needs_exactly_one_source():
    with pytest.raises(PostValidationError) as err:
        decode_post(b'{"id": "p", "images": [{"url": "https://x/a.png", "data": "AAAA"}]}')
    assert (
        "images.0: Value error, an image needs exactly one of `url` or `data`" in err.value.reason
    )


def test_inline_image_must_be_base64():
    with pytest.raises(PostValidationError) as err:
        decode_post(b'{"id": "p", "images": [{"data": "not base64!!"}]}')
    assert err.value.reason.startswith("images.0.data: Value error, `data` is not valid base64")


def test_image_count_limit_is_configurable():
    raw = json.dumps({"id": "p", "images": [{"url": f"https://x/{i}"} for i in range(3)]}).encode()
    assert len(decode_post(raw).post.images) == 3
    with pytest.raises(PostValidationError, match="3 images is more than the limit of 2"):
        decode_post(raw, limits=PostLimits(max_images=2))


@pytest.mark.parametrize("raw", [b"\xff\xfe", b"not json", b"[1, 2]", b'"text"'])
def test_undecodable_bytes_are_a_decode_error(raw):
    with pytest.raises(PostDecodeError) as err:
        decode_post(raw)
    assert err.value.stage is Stage.DECODE


def test_invalid_utf8_names_the_byte():
    with pytest.raises(PostDecodeError, match="not UTF-8: byte 0xff at 9"):
        decode_post(b'{"id": "p\xff"}')


def test_numbers_too_long_to_convert_are_a_decode_error_not_a_crash():
    with pytest.raises(PostDecodeError, match="not JSON"):
        decode_post(b'{"id": "p", "meta": {"n": ' + b"9" * 5000 + b"}}")


def test_lone_surrogates_become_replacement_characters_and_are_reported():
    raw = b'{"id": "s1", "text": "replica \\ud800 rolex", "meta": {"k\\udfff": ["\\udc00x"]}}'
    decoded = decode_post(raw)
    assert decoded.post.text == "replica \ufffd rolex"
    assert decoded.post.meta == {"k\ufffd": ["\ufffdx"]}
    changes = {(c.field, c.change) for c in decoded.changes}
    assert changes == {
        ("text", InputChangeKind.SURROGATES_REPLACED),
        ("meta.k\ufffd", InputChangeKind.SURROGATES_REPLACED),
        ("meta.k\ufffd.0", InputChangeKind.SURROGATES_REPLACED),
    }
    decoded.post.model_dump_json()  # now serializable: this raised before normalization


def test_surrogate_pairs_are_real_characters_and_stay():
    decoded = decode_post(b'{"id": "e", "text": "smile \\ud83d\\ude00"}')
    assert decoded.post.text == "smile \U0001f600"
    assert decoded.changes == ()


def test_text_past_the_cap_is_cut_and_recorded():
    raw = json.dumps({"id": "long", "text": "x" * 1_000_000}).encode()
    decoded = decode_post(raw, limits=PostLimits(max_text_chars=20_000))
    assert len(decoded.post.text or "") == 20_000
    [change] = decoded.changes
    assert change.field == "text" and change.change is InputChangeKind.TRUNCATED
    assert "20,000 of 1,000,000" in change.detail


@pytest.mark.parametrize("depth", [33, 300])
def test_nesting_past_the_limit_fails_validate_naming_the_limit(depth):
    with pytest.raises(PostValidationError, match=r"nested more than 32 levels deep at meta\.a"):
        decode_post(nested(depth), limits=PostLimits(max_depth=32))


def test_nesting_at_the_limit_is_accepted():
    assert decode_post(nested(32), limits=PostLimits(max_depth=32)).post.id == "deep"


def test_nesting_deeper_than_the_parser_can_read_fails_validate_not_recursion():
    with pytest.raises(PostValidationError, match="nested too deep") as err:
        decode_post(nested(100_000))
    assert err.value.stage is Stage.VALIDATE


def test_check_depth_is_iterative_and_counts_lists():
    check_depth([[[1]]], 3)
    with pytest.raises(PostValidationError, match=r"at 0\.0"):
        check_depth([[[1]]], 2)


def test_replace_surrogates_leaves_ascii_untouched():
    value = {"a": ["b", 1, None, {"c": "d"}]}
    cleaned, changes = replace_surrogates(value)
    assert cleaned == value and changes == []


SCAM = "Selling replica Rolex, 1:1 copy"


def decode_text(text: str, **fields: object) -> DecodedPost:
    return decode_post(json.dumps({"id": "t", "text": text, **fields}).encode())


def test_invisible_format_characters_are_removed_and_counted():
    hidden = "rep\u200blica\u00ad \u202eRolex\u202c \ufeff1:1\u2060 copy\u200d"
    decoded = decode_text(hidden)
    assert decoded.post.text == "replica Rolex 1:1 copy"
    [change] = decoded.changes
    assert (change.field, change.change) == ("text", InputChangeKind.INVISIBLES_REMOVED)
    assert change.detail == "7 invisible format characters removed"


def test_long_whitespace_runs_become_one_space_or_one_newline():
    text = "a" + " " * 17 + "b" + " \t\n" * 10 + "c" + "\u3000" * 40 + "d"
    decoded = decode_text(text)
    assert decoded.post.text == "a b\nc d"
    [change] = decoded.changes
    assert (change.field, change.change) == ("text", InputChangeKind.WHITESPACE_COLLAPSED)
    assert change.detail == (
        "3 whitespace runs of more than 16 characters (87 in all) made one character each"
    )


def test_whitespace_a_reader_sees_as_layout_stays():
    text = "Dear all,\n\n    indented  twice\n" + " " * 15 + "end"  # a run of 16
    decoded = decode_text(text)
    assert decoded.post.text == text
    assert decoded.changes == ()


@pytest.mark.parametrize("pad", [" " * 20_000, "\u200b" * 20_000, " \u200b\n" * 20_000])
def test_padding_made_of_blanks_no_longer_pushes_words_past_the_cap(pad):
    decoded = decode_text(pad + SCAM)
    assert decoded.post.text is not None and decoded.post.text.endswith(SCAM)
    assert not decoded.truncated
    assert InputChangeKind.TRUNCATED not in {change.change for change in decoded.changes}


def test_visible_padding_is_still_cut_and_the_post_says_it_was():
    decoded = decode_text("ab " * 7000 + SCAM)
    assert decoded.truncated
    assert SCAM not in (decoded.post.text or "")


def test_a_message_saying_it_was_not_cut_does_not_make_it_so():
    decoded = decode_text("x" * 30_000, truncated=False)
    assert decoded.truncated
    assert decoded.post.model_extra == {"truncated": False}, "kept, as every unknown field"

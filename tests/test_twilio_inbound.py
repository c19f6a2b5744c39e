"""bot/twilio_inbound.py against Twilio's own SDK: TwiML rendering, message splitting, the inbound
form, and webhook signatures (computed with ``RequestValidator``, never re-implemented here)."""

from __future__ import annotations

from xml.etree import ElementTree

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.datastructures import ImmutableMultiDict
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from bot.segments import cost as segment_cost
from bot.twilio_inbound import (
    EMPTY_TWIML,
    MAX_MEDIA,
    MAX_MESSAGE_CHARS,
    BadRequest,
    SignatureChecker,
    channel_of,
    outgoing_messages,
    parse_inbound,
    render_twiml,
    split_message,
    xml_safe,
)
from tests.signed_webhooks import AUTH_TOKEN, twilio_form

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- XML 1.0 as the spec defines it (independent of the module's regex) -------------------------

def is_xml_char(char: str) -> bool:
    """XML 1.0 §2.2: Char ::= #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]."""
    code = ord(char)
    return (code in (0x9, 0xA, 0xD) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD
            or 0x10000 <= code <= 0x10FFFF)


def xml_line_ends(text: str) -> str:
    """What any XML parser reports for raw CR (XML 1.0 §2.11 end-of-line handling)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def is_ws(char: str) -> bool:
    return char.isspace()


def no_ws(text: str) -> str:
    return "".join(char for char in text if not char.isspace())


TRICKY = list("<>&\"'\n\r\t ]") + ["]]>", "&amp;", "<Message>", "😀", "👍🏽", "\u200b", "\u00a0",
                                    "\u2028", "\U0010ffff", "\ufffd", "é", "ｓ"]
XML_CHARS = st.characters(exclude_categories=("Cs",)).filter(is_xml_char)
# Everything a Python str can hold, lone surrogates and U+FFFE/U+FFFF included.
ANY_CHARS = st.characters(exclude_categories=())
XML_TEXT = st.lists(st.one_of(st.sampled_from(TRICKY), XML_CHARS), max_size=80).map("".join)
FORBIDDEN = st.sampled_from("\x00\x08\x0b\x0c\x1f\ufffe\uffff\ud800\udfff")
ANY_TEXT = st.lists(st.one_of(st.sampled_from(TRICKY), ANY_CHARS, FORBIDDEN), max_size=80).map("".join)


def sdk_twiml(texts: list[str]) -> str:
    response = MessagingResponse()
    for text in texts:
        response.message(text)
    return response.to_xml()


def parsed_messages(xml_text: str) -> list[str]:
    root = ElementTree.fromstring(xml_text.encode("utf-8"))
    assert root.tag == "Response"
    assert all(child.tag == "Message" and not list(child) and not child.attrib for child in root)
    return [child.text or "" for child in root]


# -- render_twiml ---------------------------------------------------------------------------------

@PROPERTY
@given(st.lists(XML_TEXT.filter(bool), max_size=5))
def test_render_twiml_is_byte_for_byte_messaging_response(texts: list[str]) -> None:
    assert render_twiml(texts).encode("utf-8") == sdk_twiml(texts).encode("utf-8")


def long_text(chunk: st.SearchStrategy[str], min_chunks: int, max_chunks: int) -> st.SearchStrategy[str]:
    """Long texts built from a few generated chunks (cheap for hypothesis, still varied)."""
    return st.lists(chunk.filter(bool), min_size=1, max_size=8).flatmap(
        lambda chunks: st.lists(st.sampled_from(chunks), min_size=min_chunks, max_size=max_chunks)
    ).map("".join)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(long_text(XML_TEXT, 40, 200).map(lambda t: t[-MAX_MESSAGE_CHARS:]))
def test_render_twiml_matches_sdk_up_to_the_limit(text: str) -> None:
    assert render_twiml([text]).encode("utf-8") == sdk_twiml([text]).encode("utf-8")


def test_render_twiml_exact_limit_and_examples() -> None:
    exactly = "x" * (MAX_MESSAGE_CHARS - 1) + "<"
    for texts in ([exactly], ["a & b", "<b>\"q\" 'q'</b>", "line1\nline2\r\n", "😀 👍"], [" "], ["]]>"]):
        assert render_twiml(texts) == sdk_twiml(texts)


def test_render_twiml_empty_list() -> None:
    assert render_twiml([]) == sdk_twiml([]) == EMPTY_TWIML
    assert EMPTY_TWIML == '<?xml version="1.0" encoding="UTF-8"?><Response />'


def test_render_twiml_drops_empty_replies() -> None:
    # Deliberate difference from MessagingResponse, which would emit <Message /> (an empty SMS).
    assert render_twiml([""]) == EMPTY_TWIML
    assert render_twiml(["", "hi", ""]) == sdk_twiml(["hi"])


@PROPERTY
@given(st.lists(ANY_TEXT, max_size=4))
def test_render_twiml_any_text_parses_and_keeps_every_xml_character(texts: list[str]) -> None:
    xml_text = render_twiml(texts)
    messages = parsed_messages(xml_text)  # never a parse error, whatever the input
    # (line ends are converted per message: "\r" then "\n" are two messages, not one CRLF)
    assert "".join(messages) == "".join(xml_line_ends("".join(filter(is_xml_char, t))) for t in texts)
    # Short texts (the common case) come back one <Message> per non-empty reply.
    assert messages == [xml_line_ends("".join(filter(is_xml_char, t))) for t in texts
                        if "".join(filter(is_xml_char, t))]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(long_text(ANY_TEXT, 20, 200))
def test_render_twiml_long_any_text_parses_and_splits(text: str) -> None:
    safe = "".join(filter(is_xml_char, text))
    messages = parsed_messages(render_twiml([text]))
    assert all(0 < len(message) <= MAX_MESSAGE_CHARS for message in messages)
    if len(safe) <= MAX_MESSAGE_CHARS:
        assert "".join(messages) == xml_line_ends(safe)
    else:
        assert no_ws("".join(messages)) == no_ws(safe)


def test_xml_safe_removes_exactly_the_forbidden_characters() -> None:
    every_bmp = "".join(map(chr, range(0x10000))) + "\U00010000\U0010ffff"
    assert xml_safe(every_bmp) == "".join(filter(is_xml_char, every_bmp))


# -- split_message --------------------------------------------------------------------------------

def check_split(text: str, pieces: list[str], limit: int) -> None:
    """What split_message promises, checked piece by piece against the original text.

    Pieces are consecutive stretches of ``text`` separated only by whitespace (so nothing but
    whitespace at the cut points is lost), each at most ``limit``; a piece is cut at the last
    whitespace in the window ``[limit // 2, limit]`` when there is one, hard at ``limit`` otherwise.
    A cut that falls inside leading whitespace yields no (empty) piece: that whitespace is dropped.
    """
    if not pieces:
        assert text.strip() == "" and (text == "" or len(text) > limit)
        return
    remaining = text
    for piece in pieces:
        assert remaining, "a piece after the text ran out"
        if not remaining.startswith(piece) and len(remaining) > limit:
            # the window's last whitespace was in a leading whitespace run: nothing to send there
            leading = len(remaining) - len(remaining.lstrip())
            assert leading > 0 and not any(map(is_ws, remaining[leading: limit + 1])), "text lost"
            remaining = remaining[leading:]
        assert len(piece) <= limit
        assert remaining.startswith(piece), (piece, remaining)
        if len(remaining) <= limit:
            assert remaining == piece, "the rest fitted but was not sent as it is"
            remaining = ""
            continue
        following = remaining[len(piece):].lstrip()
        gap_end = len(remaining) - len(following)  # remaining[len(piece):gap_end] was dropped
        if any(map(is_ws, remaining[limit // 2: limit + 1])):
            assert gap_end > len(piece), "the window has whitespace but the cut is not at whitespace"
            assert gap_end - 1 >= limit // 2, "cut before the window"
            assert not any(map(is_ws, remaining[gap_end: limit + 1])), "not the last whitespace in the window"
        else:
            assert piece == remaining[:limit], "hard cut not at the limit"
        remaining = following
    assert remaining.strip() == "", "text left after the last piece"


WORDY = st.lists(st.one_of(st.sampled_from([" ", "  ", "\n", "\t", "\u3000", "ab", "c", "😀", "x" * 9]),
                           st.characters(exclude_categories=("Cs",))), max_size=120).map("".join)


@PROPERTY
@given(WORDY, st.integers(min_value=1, max_value=40))
def test_split_message_keeps_everything_but_cut_whitespace(text: str, limit: int) -> None:
    pieces = split_message(text, limit)
    check_split(text, pieces, limit)
    assert no_ws("".join(pieces)) == no_ws(text)
    if len(text) <= limit:
        assert pieces == ([text] if text else [])


@PROPERTY
@given(WORDY.map(str.strip), st.integers(min_value=1, max_value=40))
def test_split_message_pieces_are_non_empty_for_stripped_replies(text: str, limit: int) -> None:
    # The engine strips every reply before it is rendered, so this is the case the webhook meets.
    pieces = split_message(text, limit)
    assert all(piece and piece == piece.strip() for piece in pieces), pieces


@pytest.mark.parametrize("text", [" " * 900 + "x" * 1000, " " * 2000, "\n" * 1601])
def test_split_message_never_yields_an_empty_piece(text: str) -> None:
    pieces = split_message(text)
    assert all(pieces), pieces
    assert "<Message></Message>" not in render_twiml([text])


def test_split_message_long_reply_cut_at_whitespace() -> None:
    words = " ".join(f"word{n:04d}" for n in range(500))  # 4499 chars
    pieces = split_message(words)
    assert len(pieces) == 3
    assert all(len(piece) <= MAX_MESSAGE_CHARS for piece in pieces)
    assert " ".join(pieces) == words  # cut exactly at spaces, no word broken
    assert all(piece.split()[-1].startswith("word") and len(piece.split()[-1]) == 8 for piece in pieces)
    # as late as possible: the next word would not have fitted
    for piece, after in zip(pieces, pieces[1:], strict=False):
        assert len(piece) + 1 + len(after.split()[0]) > MAX_MESSAGE_CHARS


def test_split_message_without_whitespace_cuts_hard_at_the_limit() -> None:
    text = "é" * 4000
    assert split_message(text) == ["é" * 1600, "é" * 1600, "é" * 800]
    # whitespace only in the first half of the window does not count: still a hard cut
    text = "a" * 100 + " " + "b" * 3000
    assert split_message(text)[0] == text[:1600]


def test_render_twiml_splits_a_long_reply_into_several_messages() -> None:
    reply = "Line of text & <stuff>. " * 200  # 4800 chars
    messages = parsed_messages(render_twiml([reply, "short"]))
    assert len(messages) >= 4 and messages[-1] == "short"
    assert all(len(message) <= MAX_MESSAGE_CHARS for message in messages)
    assert " ".join(messages[:-1]) == reply  # each cut dropped exactly one space


# -- parse_inbound --------------------------------------------------------------------------------

def test_parse_inbound_reads_twilios_form() -> None:
    form = twilio_form("Hello there", "+15557654321", message_sid="SM" + "a" * 32)
    inbound = parse_inbound(form)
    assert inbound.message_sid == "SM" + "a" * 32
    assert inbound.sender == "+15557654321"
    assert inbound.to == form["To"]
    assert inbound.body == "Hello there"
    assert inbound.media == ()
    assert inbound.opt_out_type is None


@pytest.mark.parametrize(("drop", "reason"), [
    (("MessageSid", "SmsMessageSid", "SmsSid"), "missing MessageSid"),
    (("From",), "missing From"),
])
def test_parse_inbound_missing_fields(drop: tuple[str, ...], reason: str) -> None:
    form = {key: value for key, value in twilio_form("hi").items() if key not in drop}
    with pytest.raises(BadRequest, match=f"^{reason}$"):
        parse_inbound(form)
    blanked = {**twilio_form("hi"), **{key: "" for key in drop}}
    with pytest.raises(BadRequest, match=f"^{reason}$"):
        parse_inbound(blanked)


def test_parse_inbound_falls_back_to_the_legacy_sid_fields() -> None:
    form = {key: value for key, value in twilio_form("hi").items() if key != "MessageSid"}
    assert parse_inbound(form).message_sid == form["SmsMessageSid"]


def test_parse_inbound_mms_with_empty_body() -> None:
    form = twilio_form("", NumMedia="2", MediaUrl0="https://api.twilio.com/media/ME1",
                       MediaContentType0="image/jpeg", MediaUrl1="https://api.twilio.com/media/ME2",
                       MediaContentType1="image/png")
    inbound = parse_inbound(form)
    assert inbound.body == ""
    assert inbound.media == ("https://api.twilio.com/media/ME1", "https://api.twilio.com/media/ME2")


@pytest.mark.parametrize("num_media", ["two", "1.5", "-1", str(MAX_MEDIA + 1), "99999999999999999999"])
def test_parse_inbound_bad_num_media(num_media: str) -> None:
    with pytest.raises(BadRequest, match="NumMedia"):
        parse_inbound(twilio_form("", NumMedia=num_media))


def test_parse_inbound_num_media_limit_and_blank() -> None:
    urls = {f"MediaUrl{n}": f"https://m.example/{n}" for n in range(MAX_MEDIA)}
    assert len(parse_inbound(twilio_form("", NumMedia=str(MAX_MEDIA), **urls)).media) == MAX_MEDIA
    assert parse_inbound(twilio_form("x", NumMedia="")).media == ()


@pytest.mark.parametrize("kind", ["STOP", "START", "HELP"])
def test_parse_inbound_carries_opt_out_type(kind: str) -> None:
    assert parse_inbound(twilio_form(kind.lower(), OptOutType=kind)).opt_out_type == kind
    assert parse_inbound(twilio_form("x", OptOutType="")).opt_out_type is None


def test_parse_inbound_body_is_made_xml_safe_and_bounded() -> None:
    assert parse_inbound(twilio_form("a\x00b\x1bc\ufffe")).body == "abc"
    assert parse_inbound(twilio_form("x" * MAX_MESSAGE_CHARS)).body == "x" * MAX_MESSAGE_CHARS
    with pytest.raises(BadRequest, match="Body longer than 1600"):
        parse_inbound(twilio_form("x" * (MAX_MESSAGE_CHARS + 1)))


@pytest.mark.parametrize(("field", "value"), [
    ("From", "+1555\x00123"), ("From", "+1" * 40), ("MessageSid", "SM\n1"), ("To", "x" * 65),
])
def test_parse_inbound_refuses_odd_identifiers(field: str, value: str) -> None:
    form = twilio_form("hi")
    form[field] = value
    if field == "MessageSid":
        form["SmsMessageSid"] = form["SmsSid"] = value
    with pytest.raises(BadRequest, match=f"{field} is not a valid value"):
        parse_inbound(form)


# -- SignatureChecker -----------------------------------------------------------------------------

URL = "https://bot.example.com/sms?tenant=acme"
FORM = twilio_form("Hello & <goodbye> 😀", message_sid="SM" + "5" * 32)
sdk = RequestValidator(AUTH_TOKEN)
checker = SignatureChecker(AUTH_TOKEN)


def test_signature_valid_for_the_exact_url() -> None:
    signature = sdk.compute_signature(URL, FORM)
    assert checker.valid(URL, FORM, signature)
    assert checker.sign(URL, FORM) == signature


@pytest.mark.parametrize(("signed_url", "checked_url"), [
    ("https://bot.example.com:443/sms", "https://bot.example.com/sms"),
    ("https://bot.example.com/sms", "https://bot.example.com:443/sms"),
    ("http://bot.example.com:80/sms?a=1", "http://bot.example.com/sms?a=1"),
    ("http://bot.example.com/sms?a=1", "http://bot.example.com:80/sms?a=1"),
])
def test_signature_valid_with_or_without_the_default_port(signed_url: str, checked_url: str) -> None:
    signature = sdk.compute_signature(signed_url, FORM)
    assert checker.valid(checked_url, FORM, signature)
    assert sdk.validate(checked_url, FORM, signature)  # the SDK agrees


@pytest.mark.parametrize(("signed_url", "checked_url"), [
    ("https://bot.example.com:8443/sms", "https://bot.example.com/sms"),  # not the default port
    ("https://bot.example.com:80/sms", "https://bot.example.com/sms"),  # http's port for https
    ("http://bot.example.com/sms", "https://bot.example.com/sms"),
    ("https://bot.example.com/sms", "https://bot.example.com/sms?tenant=acme"),
    ("https://bot.example.com/sms?tenant=acme", "https://bot.example.com/sms"),
    ("https://bot.example.com/sms", "https://evil.example.com/sms"),
    ("https://bot.example.com/sms", "https://bot.example.com/SMS"),
])
def test_signature_for_another_url_is_invalid(signed_url: str, checked_url: str) -> None:
    assert not checker.valid(checked_url, FORM, sdk.compute_signature(signed_url, FORM))


def test_signature_wrong_token_or_params_is_invalid() -> None:
    assert not checker.valid(URL, FORM, RequestValidator("another-token").compute_signature(URL, FORM))
    signature = sdk.compute_signature(URL, FORM)
    assert not checker.valid(URL, {**FORM, "Body": FORM["Body"] + " "}, signature)
    assert not checker.valid(URL, {**FORM, "Extra": ""}, signature)
    assert not checker.valid(URL, {k: v for k, v in FORM.items() if k != "NumMedia"}, signature)
    assert not checker.valid(URL, FORM, signature[:-2])
    assert signature.swapcase() != signature
    assert not checker.valid(URL, FORM, signature.swapcase())
    assert not SignatureChecker("another-token").valid(URL, FORM, signature)


@pytest.mark.parametrize("signature", [None, ""])
def test_missing_signature_is_invalid(signature: str | None) -> None:
    assert not checker.valid(URL, FORM, signature)
    assert not checker.valid(URL, {}, signature)


def test_repeated_fields_signed_as_the_sdk_does() -> None:
    pairs = [*FORM.items(), ("MediaUrl0", "https://m.example/b"), ("MediaUrl0", "https://m.example/a"),
             ("Tag", "x"), ("Tag", "x")]
    multi = ImmutableMultiDict(pairs)  # a real multi-dict: the SDK reads it with getlist
    signature = sdk.compute_signature(URL, multi)
    grouped: dict[str, list[str]] = {}
    for key, value in pairs:
        grouped.setdefault(key, []).append(value)
    assert checker.valid(URL, grouped, signature)
    assert checker.sign(URL, grouped) == signature
    assert checker.valid(URL, {k: tuple(v) for k, v in grouped.items()}, signature)
    # only the first (or the last) of the repeated values is not what was signed
    assert not checker.valid(URL, {k: v[0] for k, v in grouped.items()}, signature)
    assert not checker.valid(URL, {k: v[-1] for k, v in grouped.items()}, signature)


SCHEMES_HOSTS = st.tuples(st.sampled_from(["http", "https"]),
                          st.sampled_from(["bot.example.com", "127.0.0.1", "abc.ngrok.app"]),
                          st.sampled_from(["", ":80", ":443", ":8000"]),
                          st.sampled_from(["/sms", "/hooks/sms", "/sms/"]),
                          st.sampled_from(["", "?a=1", "?a=1&b=%20x"]))


@PROPERTY
@given(SCHEMES_HOSTS, SCHEMES_HOSTS, st.dictionaries(st.sampled_from(["Body", "From", "To", "X"]),
                                                     st.text(max_size=10), max_size=4))
def test_signature_check_agrees_with_the_sdk_validate(signed: tuple[str, ...], checked: tuple[str, ...],
                                                      form: dict[str, str]) -> None:
    signed_url = "{}://{}{}{}{}".format(*signed)
    checked_url = "{}://{}{}{}{}".format(*checked)
    signature = sdk.compute_signature(signed_url, form)
    assert checker.valid(checked_url, form, signature) == sdk.validate(checked_url, form, signature)
    if signed_url == checked_url:
        assert checker.valid(checked_url, form, signature)


@pytest.mark.parametrize("signature", ["é", "Ã©" + "A" * 26, "\u2603"])
def test_non_ascii_signature_is_invalid_not_an_error(signature: str) -> None:
    assert checker.valid(URL, FORM, signature) is False


@pytest.mark.parametrize("url", ["http://testserver:abc/sms", "http://testserver:99999/sms",
                                 "http://[::1/sms", "http://a]b/sms"])
def test_unparsable_url_is_invalid_not_an_error(url: str) -> None:
    assert checker.valid(url, FORM, "c29tZXRoaW5nIHdyb25nIGhlcmUhIQ==") is False


# -- our fast paths are Twilio's rules exactly --------------------------------------------------

UNICODE = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=30)


@settings(max_examples=400, deadline=None)
@given(token=UNICODE.filter(bool), url=UNICODE,
       form=st.dictionaries(UNICODE, UNICODE | st.lists(UNICODE, min_size=1, max_size=3), max_size=8))
def test_signature_is_the_sdks_for_any_form(token: str, url: str, form: dict[str, str | list[str]]) -> None:
    ours = SignatureChecker(token).sign(url, form)
    sdk_form = ImmutableMultiDict([(name, item) for name, value in form.items()
                                   for item in ([value] if isinstance(value, str) else value)])
    assert ours == RequestValidator(token).compute_signature(url, sdk_form)


@settings(max_examples=300, deadline=None)
@given(url=st.sampled_from(["https://bot.example/sms", "https://bot.example:443/sms?x=1",
                            "http://127.0.0.1:8000/sms", "http://bot.example/sms"]),
       form=st.dictionaries(UNICODE, UNICODE, max_size=6), forged=st.booleans())
def test_validity_is_the_sdks_for_any_request(url: str, form: dict[str, str], forged: bool) -> None:
    signer = RequestValidator("other" if forged else AUTH_TOKEN)
    for signed_url in {url, url.replace(":443", ""), url.replace("https://bot.example/", "https://bot.example:443/")}:
        signature = signer.compute_signature(signed_url, form)
        assert SignatureChecker(AUTH_TOKEN).valid(url, form, signature) == RequestValidator(AUTH_TOKEN).validate(
            url, form, signature)


FORM_TEXT = st.lists(st.sampled_from(list("ab=&%+2F0C3e9Z ") + ["%41", "%C3%A9", "%FF", "%E2%82%AC", "%2"]),
                     max_size=25).map("".join)


@settings(max_examples=1000, deadline=None)
@given(body=FORM_TEXT | st.binary(max_size=40).map(lambda raw: raw.decode("latin-1")))
def test_parse_form_is_parse_qsl_strict(body: str) -> None:
    from urllib.parse import parse_qsl

    from bot.twilio_inbound import BadRequest, parse_form

    try:
        expected: list[tuple[str, str]] | None = parse_qsl(
            body.encode("latin-1").decode("ascii"), keep_blank_values=True, strict_parsing=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        expected = None
    try:
        ours: list[tuple[str, str]] | None = parse_form(body.encode("latin-1"))
    except BadRequest:
        ours = None
    if body == "":
        assert ours == [] and expected in ([], None)
    else:
        assert ours == expected


# -- issue 11: OptOutType, WhatsApp bodies, the cap on a turn --------------------------------------

@pytest.mark.parametrize("value", [
    "STOP\n2030-01-01 00:00:00,000 INFO bot.route: from=+1555…0000 forged line",  # a forged log line
    "UNSUBSCRIBE", "STOPALL", "OPTOUT", "STOP ", " START", "HELP!", "<STOP>", "STOP\x00", "x" * 5000,
])
def test_opt_out_type_is_validated_unknown_values_are_ignored(value: str) -> None:
    """Twilio sends only STOP, START or HELP; anything else is not Twilio's and is treated as absent
    (the message itself is still a message: a 400 would make Twilio retry it and then drop it)."""
    inbound = parse_inbound(twilio_form("hello", OptOutType=value))
    assert inbound.opt_out_type is None
    assert inbound.body == "hello"


@pytest.mark.parametrize(("value", "kind"), [("STOP", "STOP"), ("start", "START"), ("Help", "HELP")])
def test_opt_out_type_known_values_are_kept_in_capitals(value: str, kind: str) -> None:
    assert parse_inbound(twilio_form("x", OptOutType=value)).opt_out_type == kind


def test_whatsapp_body_limit_is_4096_and_sms_stays_1600() -> None:
    whatsapp = {"From": "whatsapp:+15557654321", "To": "whatsapp:+15550001111"}
    assert parse_inbound({**twilio_form("x" * 4096), **whatsapp}).body == "x" * 4096
    with pytest.raises(BadRequest, match="Body longer than 4096"):
        parse_inbound({**twilio_form("x" * 4097), **whatsapp})
    with pytest.raises(BadRequest, match="Body longer than 1600"):
        parse_inbound(twilio_form("x" * 1601, "+15557654321"))


REPLIES = st.lists(st.one_of(XML_TEXT, long_text(XML_TEXT, 10, 120)), max_size=6)


@PROPERTY
@given(REPLIES, st.sampled_from(["+15557654321", "whatsapp:+15557654321"]))
def test_outgoing_messages_cap_a_turn_at_the_channel_budget(replies: list[str], sender: str) -> None:
    channel = channel_of(sender)
    messages = outgoing_messages(replies, channel)
    assert all(0 < len(message) <= MAX_MESSAGE_CHARS for message in messages)
    if sender.startswith("whatsapp:"):
        assert sum(len(message) for message in messages) <= 4096
    else:
        assert sum(segment_cost(message).segments for message in messages) <= 10
    uncapped = [piece for reply in replies for piece in split_message(xml_safe(reply))]
    if messages != uncapped:  # cut: everything before the cut went out as it was, and the cut shows
        assert messages[:-1] == uncapped[:len(messages) - 1]
        assert messages[-1].endswith("...")
    assert parsed_messages(render_twiml(messages)) == [xml_line_ends(message) for message in messages]


def test_outgoing_messages_leave_a_normal_turn_alone() -> None:
    replies = ["Order 123456 is shipped.", "It should arrive in 2-3 days. Text STATUS for another order."]
    assert outgoing_messages(replies, channel_of("+15557654321")) == replies
    assert outgoing_messages(["", "hi", ""], channel_of("+15557654321")) == ["hi"]


def test_a_cut_marks_the_last_message_that_can_carry_the_mark() -> None:
    """Found by the property test above: a message of whitespace alone cannot carry "...", so the
    one before it does (it used to be dropped, and the cut went unmarked)."""
    six_segments = "<\t]]>" * 60  # a tab makes it UCS-2: 300 characters, 5 segments
    replies = ["<", "<", "<", "<", six_segments, "\n", "<"]
    messages = outgoing_messages(replies, channel_of("+15557654321"))
    assert messages[:4] == ["<"] * 4 and messages[-1].endswith("...") and len(messages) == 5

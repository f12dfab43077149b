"""Endpoints as configured, and the shapes of IMAP, POP3 and SMTP reply lines."""

from __future__ import annotations

import pytest

from hostvigil.collectors.mail.parse import (
    Endpoint,
    ImapResponse,
    apply_settings,
    check_settings,
    imap_capabilities,
    parse_endpoints,
    parse_imap,
    parse_pop3,
    parse_smtp,
    parse_url,
)


@pytest.mark.parametrize(
    ("url", "label", "port", "implicit_tls"),
    [
        ("imap://mail.example.com", "imap://mail.example.com:143", 143, False),
        ("imaps://mail.example.com", "imaps://mail.example.com:993", 993, True),
        ("pop3://127.0.0.1:10110", "pop3://127.0.0.1:10110", 10110, False),
        ("pop3s://127.0.0.1", "pop3s://127.0.0.1:995", 995, True),
        ("smtp://[2001:db8::25]", "smtp://[2001:db8::25]:25", 25, False),
        ("SMTPS://Mail.Example.com", "smtps://mail.example.com:465", 465, True),
        ("submission://mail.example.com/", "submission://mail.example.com:587", 587, False),
        ("lmtp://127.0.0.1", "lmtp://127.0.0.1:24", 24, False),
    ],
)
def test_urls_name_the_service_and_its_standard_port(url: str, label: str, port: int, implicit_tls: bool) -> None:
    endpoint = parse_url(url)
    assert (endpoint.label, endpoint.port, endpoint.implicit_tls) == (label, port, implicit_tls)


def test_an_lmtp_url_with_a_path_is_a_unix_socket() -> None:
    endpoint = parse_url("lmtp:///var/spool/postfix/private/dovecot-lmtp")
    assert (endpoint.path, endpoint.host, endpoint.label) == (
        "/var/spool/postfix/private/dovecot-lmtp", "", "lmtp:///var/spool/postfix/private/dovecot-lmtp")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("imapx://mail.example.com", 'unknown scheme "imapx"'),
        ("mail.example.com:143", 'unknown scheme "mail.example.com"'),
        ("imap:///var/run/imap", "only lmtp:///path names a unix socket"),
        ("imaps://probe:secret@mail.example.com", "no user or password in the URL"),
        ("imap://mail.example.com:99999", "bad port"),
        ("imap://mail.example.com/INBOX", "a path after the host"),
        ("imap://mail.example.com?x=1", "a query or fragment"),
        ("lmtp://", "no host"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_url(url)


def test_collector_wide_settings_apply_where_they_make_sense() -> None:
    defaults = check_settings(
        {"user": "probe", "password_file": "/etc/hostvigil/probe.pw", "rcpt": "probe@example.com",
         "ca_file": "/etc/ssl/mail-ca.pem", "starttls": "required"}, "")
    imap, smtp, lmtp = parse_endpoints(["imap://h", "smtp://h", "lmtp:///run/dovecot/lmtp"], defaults)
    assert (imap.user, imap.rcpt, imap.starttls, imap.ca_file) == ("probe", "", "required", "/etc/ssl/mail-ca.pem")
    assert (smtp.user, smtp.rcpt, smtp.starttls) == ("", "probe@example.com", "required")
    assert (lmtp.user, lmtp.rcpt, lmtp.starttls) == ("", "probe@example.com", "auto")  # a unix socket has no TLS


def test_an_endpoint_table_overrides_the_collector_wide_settings() -> None:
    (endpoint,) = parse_endpoints(
        [{"url": "imaps://127.0.0.1", "tls_name": "mail.example.com", "tls_verify": False}],
        check_settings({"tls_name": "other.example.com"}, ""),
    )
    assert (endpoint.tls_name, endpoint.server_name, endpoint.tls_verify) == ("mail.example.com", "mail.example.com",
                                                                              False)


@pytest.mark.parametrize(
    ("items", "defaults", "message"),
    [
        ([1], {}, r"endpoints\[0\]: expected a URL or a table"),
        (["imap://h", {"uri": "imap://h2"}], {}, r'endpoints\[1\]: unknown key "uri"'),
        ([{"user": "probe"}], {}, r'endpoints\[0\]: a table needs url = "scheme://host:port"'),
        (["imap://h", "imap://h:143"], {}, r"endpoints\[1\]: imap://h:143 is listed twice"),
        ([{"url": "imap://h", "user": "probe"}], {}, 'user "probe" needs password_file'),
        ([{"url": "lmtp://h", "user": "probe", "password_file": "/p"}], {}, "lmtp has no login"),
        ([{"url": "imap://h", "rcpt": "probe@example.com"}], {}, "imap takes no recipient"),
        ([{"url": "lmtp:///run/lmtp", "starttls": "required"}], {}, "a unix socket is not TLS-protected"),
        ([{"url": "imap://h", "starttls": "yes"}], {}, 'starttls: "yes" is not one of auto, required, off'),
        ([{"url": "smtp://h", "rcpt": "probe"}], {}, 'rcpt: "probe" is not an address'),
        ([{"url": "imap://h", "tls_verify": "no"}], {}, "tls_verify: expected a boolean"),
        ([{"url": "imap://h", "user": "probe", "password_file": "probe.pw"}], {}, "is not an absolute path"),
        ([{"url": "imap://h", "user": "a b", "password_file": "/p"}], {}, "user: must not contain spaces"),
    ],
)
def test_bad_endpoints_name_the_entry_and_the_problem(items: list[object], defaults: dict[str, object],
                                                      message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_endpoints(items, defaults)


def test_a_test_account_without_its_password_file_is_refused_collector_wide_too() -> None:
    with pytest.raises(ValueError, match="needs password_file"):
        apply_settings(Endpoint("imap", host="h", port=143), check_settings({"user": "probe"}, ""), {})


# -- replies --------------------------------------------------------------------------------------------------


def test_imap_lines() -> None:
    assert parse_imap("* OK [CAPABILITY IMAP4rev1 STARTTLS] Dovecot (Debian) ready.") == ImapResponse(
        "*", "OK", "[CAPABILITY IMAP4rev1 STARTTLS] Dovecot (Debian) ready.")
    assert parse_imap("* BYE Too many connections") == ImapResponse("*", "BYE", "Too many connections")
    assert parse_imap("h3 NO [SERVERBUG] Internal error occurred.").status == "NO"
    assert parse_imap("* 3 EXISTS") == ImapResponse("*", "", "3 EXISTS")
    assert parse_imap("+ go ahead").tag == "+"
    for garbage in ("", "h1 MAYBE", "(x) OK"):
        with pytest.raises(ValueError, match="IMAP response"):
            parse_imap(garbage)


def test_imap_capabilities_come_from_data_or_a_response_code() -> None:
    assert imap_capabilities(parse_imap("* CAPABILITY IMAP4rev1 starttls AUTH=PLAIN")) == frozenset(
        {"IMAP4REV1", "STARTTLS", "AUTH=PLAIN"})
    assert imap_capabilities(parse_imap("* OK [CAPABILITY IMAP4rev1 LOGINDISABLED] ready")) == frozenset(
        {"IMAP4REV1", "LOGINDISABLED"})
    assert imap_capabilities(parse_imap("h1 OK done")) is None


def test_pop3_and_smtp_lines() -> None:
    assert parse_pop3("+OK Dovecot (Debian) ready.") == (True, "Dovecot (Debian) ready.")
    assert parse_pop3("-ERR [SYS/PERM] Fatal error") == (False, "[SYS/PERM] Fatal error")
    assert parse_smtp("250-mail.test") == (250, True, "mail.test")
    assert parse_smtp("452 4.3.1 Insufficient system storage") == (452, False, "4.3.1 Insufficient system storage")
    assert parse_smtp("220") == (220, False, "")
    for garbage in ("OK", "2500 x", "999 no", "25 x"):
        with pytest.raises(ValueError, match="not an SMTP reply"):
            parse_smtp(garbage)
    with pytest.raises(ValueError, match="POP3 status"):
        parse_pop3("* OK IMAP here")

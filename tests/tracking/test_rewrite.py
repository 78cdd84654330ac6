"""Click and open tracking in HTML: which links change, how, the pixel, hostile markup."""

from __future__ import annotations

import pytest

from postyard.tracking.rewrite import (
    MAX_TRACKED_LINKS,
    RewriteResult,
    decode_attribute_value,
    rewrite_html,
)

PIXEL = '<img src="https://t.test/o/TOKEN" width="1" height="1" alt="" style="display:none">'


def click(index: int) -> str:
    return f"https://t.test/c/{index}"


def links_only(html: str) -> RewriteResult:
    return rewrite_html(html, click_url=click, open_pixel_url=None)


def test_http_links_are_rewritten_in_document_order() -> None:
    result = links_only(
        '<p><a href="https://a.test/">A</a> and <a href="http://b.test/x?y=1">B</a></p>'
        '<div><a class="btn" href="https://a.test/">A again</a></div>'
    )
    assert result.html == (
        '<p><a href="https://t.test/c/0">A</a> and <a href="https://t.test/c/1">B</a></p>'
        '<div><a class="btn" href="https://t.test/c/2">A again</a></div>'
    )
    assert result.links == ("https://a.test/", "http://b.test/x?y=1", "https://a.test/")


@pytest.mark.parametrize(
    "anchor",
    [
        '<a href="mailto:ann@example.org">mail</a>',
        '<a href="tel:+15551234">call</a>',
        '<a href="#top">top</a>',
        '<a href="/relative/path">rel</a>',
        '<a href="page.html">rel</a>',
        '<a href="//cdn.example.org/x">protocol-relative</a>',
        '<a href="ftp://example.org/">ftp</a>',
        '<a href="javascript:alert(1)">js</a>',
        '<a href="">empty</a>',
        "<a href>no value</a>",
        '<a name="anchor">no href</a>',
        "<a>bare</a>",
        '<a href="https://a.test/" data-pytrack="off">opted out</a>',
        "<a data-pytrack=OFF href=https://a.test/>opted out</a>",
        '<link href="https://a.test/style.css">',
        '<area href="https://a.test/">',
        '<img src="https://a.test/i.png">',
    ],
)
def test_links_that_stay_as_they_are(anchor: str) -> None:
    html = f"<body>{anchor}</body>"
    assert links_only(html) == RewriteResult(html=html, links=())


@pytest.mark.parametrize(
    ("anchor", "expected"),
    [
        ("<a href='https://a.test/'>x</a>", '<a href="https://t.test/c/0">x</a>'),
        ("<a href=https://a.test/>x</a>", '<a href="https://t.test/c/0">x</a>'),
        ('<A HREF="https://a.test/">x</A>', '<A HREF="https://t.test/c/0">x</A>'),
        ('<a Href = "HTTPS://a.test/" >x</a>', '<a Href = "https://t.test/c/0" >x</a>'),
        ('<a\nhref="https://a.test/"\ntarget=_blank>x</a>',
         '<a\nhref="https://t.test/c/0"\ntarget=_blank>x</a>'),
        ('<a/href="https://a.test/">x</a>', '<a/href="https://t.test/c/0">x</a>'),
        ('<a title="a > b" href="https://a.test/">x</a>',
         '<a title="a > b" href="https://t.test/c/0">x</a>'),
        ('<a href="https://a.test/" href="https://b.test/">x</a>',
         '<a href="https://t.test/c/0" href="https://b.test/">x</a>'),
        ('<a href="  https://a.test/\n  ">x</a>', '<a href="https://t.test/c/0">x</a>'),
        ('<a data-pytrack="on" href="https://a.test/">x</a>',
         '<a data-pytrack="on" href="https://t.test/c/0">x</a>'),
    ],
)  # fmt: skip
def test_attribute_syntax(anchor: str, expected: str) -> None:
    result = links_only(anchor)
    assert result.html == expected
    assert len(result.links) == 1


def test_entities_are_decoded_for_the_stored_link_and_escaped_in_the_output() -> None:
    result = rewrite_html(
        '<a href="https://a.test/?a=1&amp;b=2&#38;c=3&#x26;d=&quot;q&quot;">x</a>',
        click_url=lambda index: f'https://t.test/c?i={index}&s="x"<\'>',
        open_pixel_url=None,
    )
    assert result.links == ('https://a.test/?a=1&b=2&c=3&d="q"',)
    assert result.html == '<a href="https://t.test/c?i=0&amp;s=&quot;x&quot;&lt;&#x27;&gt;">x</a>'


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("?a=1&copy=2", "?a=1&copy=2"),  # legacy name followed by "=": not a reference
        ("?a=1&notify=1", "?a=1&notify=1"),  # "&not" + more letters: not in attributes
        ("?x&copy;y", "?x©y"),
        ("?x&copy y", "?x© y"),
        ("&amp;&AMP;&lt;&#60;&#x3C;&#0;", "&&<<<\ufffd"),
        ("&unknown;&;&", "&unknown;&;&"),
        ("&#0000000065;&#x00041&#128;&#xD800;&#x110000;", "AA\u20ac\ufffd\ufffd"),
        ("&#" + "9" * 5000 + ";&#x" + "f" * 5000, "\ufffd\ufffd"),
    ],
)
def test_attribute_values_follow_the_html_attribute_rules(raw: str, decoded: str) -> None:
    assert decode_attribute_value(raw) == decoded


def test_controls_and_spaces_in_a_link_are_percent_encoded() -> None:
    result = links_only('<a href="https://a.test/a b\x01c\tx">x</a>')
    assert result.links == ("https://a.test/a%20b%01cx",)


def test_nested_markup_and_anchor_text_are_kept() -> None:
    html = (
        '<table><tr><td><a href="https://a.test/"><img src="cid:logo" alt="Logo">'
        "<span><b>Shop</b> now</span></a></td></tr></table>"
    )
    result = links_only(html)
    assert result.html == html.replace("https://a.test/", "https://t.test/c/0")
    assert result.links == ("https://a.test/",)


def test_links_in_comments_scripts_and_raw_text_are_not_links() -> None:
    html = (
        '<!-- <a href="https://hidden.test/">x</a> -->'
        '<!--[if mso]><a href="https://mso.test/">x</a><![endif]-->'
        "<script>var s = '<a href=\"https://script.test/\">';</script>"
        '<style>a[href="https://style.test/"]{}</style><title><a href="https://t.test/"></title>'
        '<textarea><a href="https://ta.test/"></textarea>'
        '<a href="https://real.test/">real</a>'
    )
    result = links_only(html)
    assert result.links == ("https://real.test/",)
    assert result.html == html.replace("https://real.test/", "https://t.test/c/0")


def test_unterminated_tags_are_left_alone() -> None:
    html = '<p>x</p><a href="https://a.test/" title="never closed>text'
    assert links_only(html) == RewriteResult(html=html, links=())
    assert links_only('<a href="https://a.test/"') == RewriteResult(
        html='<a href="https://a.test/"', links=()
    )


def test_at_most_max_tracked_links_are_rewritten() -> None:
    html = '<a href="https://a.test/">x</a>' * (MAX_TRACKED_LINKS + 5)
    result = links_only(html)
    assert len(result.links) == MAX_TRACKED_LINKS
    assert result.html.count("https://a.test/") == 5


def test_pixel_goes_before_the_last_body_end_tag() -> None:
    html = "<html><body><p>Hi</p><!-- </body> --></BODY ></html>"
    result = rewrite_html(html, click_url=None, open_pixel_url="https://t.test/o/TOKEN")
    assert result.html == f"<html><body><p>Hi</p><!-- </body> -->{PIXEL}</BODY ></html>"
    twice = rewrite_html(
        "<body>a</body>b</body>", click_url=None, open_pixel_url="https://t.test/o/TOKEN"
    )
    assert twice.html == f"<body>a</body>b{PIXEL}</body>"


def test_pixel_goes_at_the_end_without_a_body_tag() -> None:
    result = rewrite_html("<p>Hi</p>", click_url=None, open_pixel_url="https://t.test/o/TOKEN")
    assert result.html == f"<p>Hi</p>{PIXEL}"
    script = rewrite_html("<script>'</body>'</script>", click_url=None, open_pixel_url="x")
    assert script.html.endswith(
        '</script><img src="x" width="1" height="1" alt="" style="display:none">'
    )


def test_pixel_url_is_escaped_and_links_are_left_alone_without_click_url() -> None:
    html = '<body><a href="https://a.test/">x</a></body>'
    result = rewrite_html(html, click_url=None, open_pixel_url='https://t.test/o?a=1&b="2"')
    assert result.links == ()
    assert result.html == (
        '<body><a href="https://a.test/">x</a><img src="https://t.test/o?a=1&amp;b=&quot;2&quot;" '
        'width="1" height="1" alt="" style="display:none"></body>'
    )


def test_links_after_the_body_end_and_the_pixel_together() -> None:
    html = '<body>a</body><a href="https://a.test/">late</a>'
    result = rewrite_html(html, click_url=click, open_pixel_url="https://t.test/o/TOKEN")
    assert result.html == f'<body>a{PIXEL}</body><a href="https://t.test/c/0">late</a>'


def test_no_tracking_at_all_returns_the_input() -> None:
    html = "<p>&copy; <b>x</b></p>"
    assert rewrite_html(html, click_url=None, open_pixel_url=None) == RewriteResult(html, ())


@pytest.mark.parametrize(
    "unit",
    [
        '<a href="',
        "<a href='https://a.test/' ",
        "<!--",
        "<!-",
        "<<<<",
        "<a <a <a ",
        "<script>",
        "</",
        "<a title=x",
        '<a href="https://a.test/">',
        "<a\x00\t/=\"'>",
        "&amp;&#x;&#;&#99999999999;",
        '<a href="https://a.test/&#' + "9" * 5000 + ';">',
        '<a href="https://a.test/&' + "x" * 5000 + '">',
    ],
)
def test_hostile_markup_finishes(unit: str) -> None:
    # A few megabytes of each; quadratic work here would not finish within the test run.
    html = unit * (2_000_000 // len(unit))
    result = rewrite_html(html, click_url=click, open_pixel_url="https://t.test/o")
    assert 'src="https://t.test/o"' in result.html
    assert len(result.links) <= MAX_TRACKED_LINKS

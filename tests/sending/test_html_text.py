"""Plain-text alternatives from HTML: structure, links, lists, entities, hostile markup."""

from __future__ import annotations

import pytest

from postyard.sending.html_text import html_to_text


def test_empty_and_text_only() -> None:
    assert html_to_text("") == ""
    assert html_to_text("just text") == "just text"
    assert html_to_text("  spaced \n\t out  ") == "spaced out"


def test_invisible_content_is_dropped() -> None:
    html = (
        "<html><head><meta charset='utf-8'><title>Title</title>"
        "<style>p { color: red }</style><script>var x = '<p>no</p>';</script></head>"
        "<body><p>Visible</p><SCRIPT type=x>hidden()</SCRIPT><template><p>t</p></template>"
        "<!-- a comment --><!--[if mso]><p>outlook only</p><![endif]--></body></html>"
    )
    assert html_to_text(html) == "Visible"


def test_head_without_end_tag_does_not_hide_the_body() -> None:
    assert html_to_text("<head><title>x</title><p>Body text") == "Body text"
    assert html_to_text("<html><head><meta x=1><body>Hi</body>") == "Hi"


def test_blocks_and_breaks() -> None:
    html = (
        "<h1>Title</h1><p>First   paragraph<br>second line</p>"
        "<div>one</div>\n   <div>two</div><p>a<br><br>b</p><hr><p>end</p>"
    )
    assert (
        html_to_text(html) == "Title\n\nFirst paragraph\nsecond line\n\none\ntwo\n\na\n\nb\n\nend"
    )


def test_nested_blocks_do_not_pile_up_blank_lines() -> None:
    html = "<div><div><p>deep</p></div></div><div><p></p><p>next</p></div>"
    assert html_to_text(html) == "deep\n\nnext"


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ('<a href="https://example.com/x">Click here</a>', "Click here (https://example.com/x)"),
        ('<a href="https://example.com">https://example.com</a>', "https://example.com"),
        ('<a href="mailto:ann@example.com">ann@example.com</a>', "ann@example.com"),
        (
            '<a href="mailto:ann@example.com">Write to us</a>',
            "Write to us (mailto:ann@example.com)",
        ),
        ('<a href="https://e.com/?a=1&amp;b=2">q</a>', "q (https://e.com/?a=1&b=2)"),
        ("<a href='https://example.com/\n  wrapped'>w</a>", "w (https://example.com/wrapped)"),
        ("<a href=https://example.com/bare>bare</a>", "bare (https://example.com/bare)"),
        ('<a href="#top">Top</a>', "Top"),
        ('<a href="javascript:void(0)">JS</a>', "JS"),
        ("<a>no href</a>", "no href"),
        ('<a href="https://example.com/"><img src="logo.png"></a>', "https://example.com/"),
        ('<a href="https://e.com/"><img src="l.png" alt="Logo"></a>', "Logo (https://e.com/)"),
        ('<a href="https://a.example/">unclosed', "unclosed (https://a.example/)"),
        ('<a href="https://a.example/">A<a href="https://b.example/">B</a>', ""),
    ],
)
def test_links(html: str, text: str) -> None:
    expected = text or "A (https://a.example/)B (https://b.example/)"
    assert html_to_text(html) == expected


def test_lists_nest_with_indentation() -> None:
    html = (
        "<p>Items:</p><ul><li>One</li><li>Two<ol><li>Two.a</li><li>Two.b</li></ol></li>"
        "<li>Three</ul>"
    )
    assert html_to_text(html) == "Items:\n\n- One\n- Two\n  - Two.a\n  - Two.b\n- Three"


def test_table_cells_and_rows() -> None:
    html = "<table><tr><th>Name</th><th>Qty</th></tr><tr><td>Apple</td><td>3</td></tr></table>"
    assert html_to_text(html) == "Name Qty\nApple 3"


def test_entities_are_decoded_once() -> None:
    html = "<p>3 &lt; 4 &amp;&amp; caf&eacute; &#8364;5 &#x263A; &amp;lt;tag&amp;gt; &nbsp;x</p>"
    assert html_to_text(html) == "3 < 4 && café €5 ☺ &lt;tag&gt; x"


def test_escaped_markup_stays_text() -> None:
    assert html_to_text("&lt;script&gt;alert(1)&lt;/script&gt;") == "<script>alert(1)</script>"


def test_preformatted_text_keeps_its_whitespace() -> None:
    html = "<p>Code:</p><pre>def f():\n    return  1\n\n\tx</pre><p>after   this</p>"
    assert html_to_text(html) == "Code:\n\ndef f():\n    return  1\n\n\tx\n\nafter this"


def test_preview_padding_characters_are_removed() -> None:
    html = "<div>Preview&zwnj;&nbsp;&zwnj;&nbsp;&#847;&shy;&#8203;</div><p>Body</p>"
    assert html_to_text(html) == "Preview\n\nBody"


def test_control_characters_are_removed() -> None:
    assert html_to_text("a\x00b\x1bc\x7fd&#0;e") == "abcd\ufffde"


def test_image_alt_text() -> None:
    assert html_to_text('<p>Hi <img src="x.png" alt=" Smiling  face "> there</p>') == (
        "Hi Smiling face there"
    )
    assert html_to_text('<img src="pixel.gif" alt="" width=1>') == ""


def test_crlf_and_case_insensitive_tags() -> None:
    assert html_to_text("<P>one</P>\r\n<BR/><Div>two</DIV>") == "one\n\ntwo"


def test_output_is_deterministic() -> None:
    html = "<ul><li>a<li>b</ul><p>x <a href='https://e.com'>y</a></p>" * 50
    assert html_to_text(html) == html_to_text(html)


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("a < b and c > d", "a < b and c > d"),
        ("1 <2 and <3", "1 <2 and <3"),
        ("x <!-- never closed <p>hidden", "x"),
        ("x <!DOCTYPE never closed", "x"),
        ("x <? processing", "x"),
        ("x </ p> y", "x y"),
        ("x <script>never closed <p>hidden", "x"),
        ("x <![CDATA[ data ]]> y", "x y"),
        ("x <![foo[ bar ]]> y", "x y"),
        ('<p title="a>b">text</p>', 'b">text'),
        ("<p>unclosed <b>bold <i>italic", "unclosed bold italic"),
    ],
)
def test_malformed_markup(html: str, text: str) -> None:
    assert html_to_text(html) == text


@pytest.mark.parametrize(
    "unit",
    ["<!--", "</", "<a", "<![CDATA[", "<!", "<?", "<a b='", '<a href="', "<a\n", "&#", "<p "],
)
def test_hostile_repetitions_are_handled(unit: str) -> None:
    # 400 KB of each: inputs that take the stdlib HTMLParser quadratic time here.
    text = html_to_text(unit * (400_000 // len(unit)))
    assert isinstance(text, str)
    assert len(text) <= 400_000


def test_huge_numeric_references_do_not_crash() -> None:
    text = html_to_text("a&#" + "9" * 5000 + ";b &#x" + "f" * 5000 + "; &#65;&amp;")
    assert text.startswith("a\ufffdb")
    assert text.endswith("A&")

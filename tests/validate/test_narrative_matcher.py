"""The fast path's narrative check (narrative.narrative_matcher) says what same_narrative says, for any div: the
template's tags with any text between them, other tags, markup and characters XML refuses written in."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sis2fhir.validate.narrative import narrative_matcher, narrative_shape, same_narrative

TEMPLATES = [
    '<div xmlns="http://www.w3.org/1999/xhtml"><p>School absence at Lincoln, 2025-08-20 to 2026-01-16: 3 of 80 days'
    " in membership absent; absence rate 3.75 %. Satisfactory attendance (ESSA).</p></div>",
    '<div xmlns="http://www.w3.org/1999/xhtml"><p>Student; identifiers S1 (urn:x); name Ann Lee.</p></div>',
    '<div xmlns="http://www.w3.org/1999/xhtml">text only</div>',
    '<div xmlns="http://www.w3.org/1999/xhtml"><p>a</p><p>b &amp; c</p><br/></div>',
]
PIECES = st.sampled_from(
    ["<p>", "</p>", "<b>", "</div>", "<div>", "<br/>", "&amp;", "&", "&lt;", "]]>", ">", "<", "\x00", "\ufffe",
     " ", "\n", "é", "x", "1", '"', "<!-- c -->", "<![CDATA[x]]>", '<p class="a">']
)  # fmt: skip


@given(st.sampled_from(TEMPLATES), st.data())
def test_the_matcher_says_what_same_narrative_says(template: str, data: st.DataObject) -> None:
    shape = narrative_shape(template)
    assert shape is not None
    matches = narrative_matcher(shape)
    div = template
    for _ in range(data.draw(st.integers(0, 4))):
        at = data.draw(st.integers(0, len(div)))
        div = div[:at] + data.draw(PIECES) + div[at:]
    assert matches(div) == same_narrative(shape, div)


def test_the_matcher_takes_other_text_in_the_tags_and_refuses_other_tags() -> None:
    shape = narrative_shape(TEMPLATES[1])
    assert shape is not None
    matches = narrative_matcher(shape)
    assert matches(TEMPLATES[1].replace("Ann Lee", "Bo O&#x27;Neil"))
    assert not matches(TEMPLATES[1].replace("<p>", "<p><b>"))
    assert not matches(TEMPLATES[1].replace("Ann", "A<nn"))
    assert not matches(None)

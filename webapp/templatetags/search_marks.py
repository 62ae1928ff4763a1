"""``{{ title|mark_matches:words }}``: a title with the words of a text query it shares marked, as the
search page's script marks them (the page without JavaScript gets the same)."""

from django import template
from django.utils.html import conditional_escape, format_html_join
from django.utils.safestring import mark_safe

from search.lexical import matched_words

register = template.Library()


@register.filter
def mark_matches(title: str, words: str = "") -> str:
    if not words:
        return conditional_escape(title)
    return format_html_join("", "{}", ((mark_safe(f"<mark>{conditional_escape(t)}</mark>") if hit
                                        else conditional_escape(t),) for t, hit in matched_words(title, words)))

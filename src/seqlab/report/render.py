"""The templates: jinja2, loaded from the package's ``templates/`` folder (package data)."""

from __future__ import annotations

from functools import cache

import jinja2


@cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("seqlab.report", "templates"),
                              autoescape=True, trim_blocks=True, lstrip_blocks=True,
                              undefined=jinja2.StrictUndefined)


def render(template: str, **context) -> str:
    """A template rendered with ``context``: every value escaped but the SVG of figures."""
    return environment().get_template(template).render(**context)

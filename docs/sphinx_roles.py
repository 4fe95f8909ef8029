"""A griffe extension for the API reference: the docstrings' Sphinx roles become inline code.

The docstrings name other objects as Sphinx does (:class:`~alva.attacks.base.Attack`); Markdown would show the
role itself, so ":class:`~a.b.Attack`" is rendered as `Attack` and ":func:`fit`" as `fit`.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|exc|obj|const):`(~?)([^`]+)`")


def plain(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


class SphinxRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(plain, obj.docstring.value)

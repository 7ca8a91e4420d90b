"""The works the studies cite, each with the page it lives at, so the report links every
citation to the work it names (a claim's `literature` text often names two or three).

`WORKS` is the one list: a study that cites a new work adds it here; a test checks that every
claim's `url` is the page of the first work its `literature` names.
"""
from __future__ import annotations

import re

# (how the studies name the work, its page)
WORKS = (
    ("Ioffe & Szegedy 2015", "https://arxiv.org/abs/1502.03167"),
    ("Santurkar et al. 2018", "https://arxiv.org/abs/1805.11604"),
    ("Garbin et al. 2020", "https://link.springer.com/article/10.1007/s11042-019-08453-9"),
    ("Li et al. 2019", "https://arxiv.org/abs/1801.05134"),
    ("Luo et al. 2019", "https://arxiv.org/abs/1809.00846"),
    ("Srivastava et al. 2014", "https://jmlr.org/papers/v15/srivastava14a.html"),
    ("Bjorck et al. 2018", "https://arxiv.org/abs/1806.02375"),
    ("Yang et al. 2019", "https://arxiv.org/abs/1902.08129"),
    ("De & Smith 2020", "https://arxiv.org/abs/2002.10444"),
    ("He et al. 2016", "https://arxiv.org/abs/1512.03385"),
)


def named_works(text: str) -> list[tuple[str, str]]:
    """The works a text names, in the order it names them (first mention)."""
    found = [(text.find(name), name, url) for name, url in WORKS if name in text]
    return [(name, url) for _, name, url in sorted(found)]


def linked(text: str) -> str:
    """The text with each work's first mention a Markdown link to its page."""
    for name, url in named_works(text):
        text = re.sub(re.escape(name), f"[{name}]({url})", text, count=1)
    return text

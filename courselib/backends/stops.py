"""Clean a stream of reply pieces: stop strings and leading whitespace (Lab 01).

A stop string can arrive split over several pieces ('US' + 'ER:'), so text that could be the
start of one is held back until the next piece decides. The whitespace a reply starts with
(SentencePiece's space before the first word after 'ASSISTANT:') is dropped, so every backend
returns 'Paris.' and not ' Paris.'.

Example::

    >>> f = StopFilter(["USER:"])
    >>> f.feed(" Paris. US"), f.feed("ER: and")
    (('Paris. ', False), ('', True))
"""

from __future__ import annotations

from collections.abc import Sequence


class StopFilter:
    """Feed pieces in order; get back the text that is safe to show and whether to stop."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.held = ""
        self.started = False

    def feed(self, piece: str) -> tuple[str, bool]:
        """(text to emit now, True when a stop string was reached)."""
        if not self.started:
            piece = piece.lstrip()
            self.started = bool(piece)
        text = self.held + piece
        cuts = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if cuts:
            self.held = ""
            return text[: min(cuts)], True
        keep = max((_overlap(text, s) for s in self.stops), default=0)
        self.held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep], False

    def flush(self) -> str:
        """The held-back text once the stream has ended without a stop string."""
        text, self.held = self.held, ""
        return text


def _overlap(text: str, stop: str) -> int:
    """Length of the longest end of ``text`` that is a proper start of ``stop``."""
    for n in range(min(len(text), len(stop) - 1), 0, -1):
        if text.endswith(stop[:n]):
            return n
    return 0

"""StopFilter: stop strings split across pieces, held-back text, leading whitespace."""

from __future__ import annotations

from courselib.backends.stops import StopFilter


def run(stops: list[str], pieces: list[str]) -> tuple[str, bool]:
    f = StopFilter(stops)
    out = ""
    for piece in pieces:
        text, done = f.feed(piece)
        out += text
        if done:
            return out, True
    return out + f.flush(), False


def test_a_stop_split_over_pieces_is_cut():
    assert run(["USER:"], [" Tokyo.", " US", "ER", ": next"]) == ("Tokyo. ", True)


def test_a_false_start_is_released():
    assert run(["USER:"], ["A US", "A flag"]) == ("A USA flag", False)


def test_held_text_comes_out_at_the_end():
    assert run(["</s>"], ["7.", "<"]) == ("7.<", False)


def test_the_earliest_of_several_stops_wins():
    assert run(["</s>", "USER:"], ["a USER: b</s>"]) == ("a ", True)


def test_leading_whitespace_of_the_reply_is_dropped_once():
    assert run([], [" ", " Tokyo", " is", "  big"]) == ("Tokyo is  big", False)

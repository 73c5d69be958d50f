"""SubRip (.srt) and WebVTT (.vtt) text from timed segments.

    srt_text([(0.0, 2.5, "Findings: the lungs are clear.")])
    -> "1\\n00:00:00,000 --> 00:00:02,500\\nFindings: the lungs are clear.\\n"

A cue's text is one line per line of the segment (blank lines removed: both formats end a cue at a
blank line); an empty segment is left out. Times are rounded to the millisecond and never run backwards.
"""

from __future__ import annotations

from collections.abc import Iterable

Cue = tuple[float, float, str]  # (start seconds, end seconds, text)


def timestamp(seconds: float, separator: str = ",") -> str:
    """HH:MM:SS,mmm (srt) or HH:MM:SS.mmm (vtt, separator='.')."""
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _cues(segments: Iterable[Cue]) -> list[Cue]:
    out: list[Cue] = []
    for start, end, text in segments:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            out.append((start, max(start, end), "\n".join(lines)))
    return out


def srt_text(segments: Iterable[Cue]) -> str:
    blocks = [
        f"{i}\n{timestamp(s)} --> {timestamp(e)}\n{t}\n" for i, (s, e, t) in enumerate(_cues(segments), 1)
    ]
    return "\n".join(blocks)


def vtt_text(segments: Iterable[Cue]) -> str:
    blocks = [f"{timestamp(s, '.')} --> {timestamp(e, '.')}\n{t}\n" for s, e, t in _cues(segments)]
    return "\n".join(["WEBVTT\n", *blocks])

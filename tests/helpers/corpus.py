"""The project's own fixed speech set: what "hears the right words" is measured on, in tests and in
`make bench`. Not used for tuning: settings are chosen on the separate tuning set
(bench/tuning_set.py, other sentences, same voices and layout), and this set then says how they
do on speech nobody tuned on. (Until 2026-12-01 some ASR latency settings were compared on this
set; docs/asr.md "Turn taking and latency" says which, and that they were re-checked on the
tuning set.)

- `sentences(engine)`: 20 single sentences per engine, Piper (the real en_US-joe-medium voice) and
  espeak-ng (robotic, harder for Whisper): different sentences for each engine.
- `paused(engine)`: sentences with one pause of 0.4–0.8 s in the middle, at a word boundary (each
  side rendered on its own, then joined by silence): the turn must not end at the pause.
- `streams(engine)`: multi-turn streams, the 20 sentences in 4 streams of 5 with gaps of 0.8–1.6 s
  between them: every word of every turn must come through, joins included.

Every clip is 16 kHz mono float32, trimmed to its voiced samples (the engines' own padding cut),
so a clip's times are exact: `Clip.audio` starts and ends on speech. Rendering is deterministic
(see tests/helpers/speech.py) and cached per process. `SpeechSet` is the shape both sets share.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from tests.helpers.speech import concat, silence, speak, speak_piper, trimmed

RATE = 16000
ENGINES = ("piper", "espeak")

PIPER_SENTENCES = (
    "Please send the report to the whole team before lunch.",
    "What time does the last train leave tonight?",
    "Can you turn off the lights in the kitchen?",
    "The weather should be warm and sunny this weekend.",
    "I left my keys on the table by the front door.",
    "How long does it take to drive to the airport?",
    "She bought fresh bread and milk at the corner shop.",
    "Remind me to call my sister when I get home.",
    "The meeting has been moved to tomorrow afternoon.",
    "Could you read me the latest news about the election?",
    "We need more paper for the printer upstairs.",
    "My phone battery is almost empty again.",
    "Play some quiet music while I am cooking dinner.",
    "The children walked to school along the river.",
    "Is there a good restaurant near the hotel?",
    "He forgot to water the plants before he left.",
    "Please add eggs, butter and flour to the shopping list.",
    "The doctor said I should rest for a few days.",
    "Our flight was delayed because of the storm.",
    "Thank you for your help, that was very kind.",
)

ESPEAK_SENTENCES = (
    "Where is the nearest station from here?",
    "I would like a cup of coffee with milk.",
    "The garden looks beautiful in the spring.",
    "Please close the window before you leave.",
    "Can you tell me the way to the museum?",
    "We are going to the beach next week.",
    "My brother works at the hospital in town.",
    "Turn the volume down a little, please.",
    "The cat is sleeping on the sofa again.",
    "What would you like to eat for dinner?",
    "It started to rain just after we arrived.",
    "I need to finish this letter by tonight.",
    "The bus was late again this morning.",
    "Could you help me carry these heavy boxes?",
    "They painted the house white last summer.",
    "Let me know when the package arrives.",
    "The library is closed on public holidays.",
    "Do you know where I put my glasses?",
    "The new bridge will open at the end of the year.",
    "Set an alarm for early tomorrow morning.",
)

# (before the pause, after it): each half is a word sequence of the full sentence
PAUSED_SENTENCES = (
    ("I was thinking that", "we could go to the park later."),
    ("Can you remind me", "to buy some milk on the way home?"),
    ("The best thing about this city", "is the food."),
    ("Please send the message", "to everyone on the list."),
    ("I would like to order", "a large pizza with mushrooms."),
    ("When you get a chance", "could you check the oven?"),
    ("So what I really need", "is a quiet place to work."),
    ("My friend told me that", "the shop will close early today."),
)
PAUSES_S = (0.4, 0.6, 0.8)  # cycled over PAUSED_SENTENCES

STREAM_SIZE = 5  # sentences per multi-turn stream
GAPS_S = (0.8, 1.2, 1.6)  # silence between turns, cycled
LEAD_S = 0.5  # silence before the first turn and after the last


@dataclass(frozen=True)
class Clip:
    """One utterance: reference text, engine, voiced audio (16 kHz float32) and its pauses
    (start, length) in seconds from the clip's start."""

    text: str
    engine: str
    audio: np.ndarray
    pauses: tuple[tuple[float, float], ...] = ()

    @property
    def seconds(self) -> float:
        return len(self.audio) / RATE

    def padded(self, before: float = 0.3, after: float = 0.3) -> np.ndarray:
        """The clip with silence around it, as a file or a turn would hold it."""
        return concat(silence(before), self.audio, silence(after))


@dataclass(frozen=True)
class Stream:
    """Several utterances in one audio stream: `spans` are (start, end) of each one's speech, seconds."""

    engine: str
    clips: tuple[Clip, ...]
    audio: np.ndarray
    spans: tuple[tuple[float, float], ...]

    @property
    def text(self) -> str:
        return " ".join(c.text for c in self.clips)

    @property
    def seconds(self) -> float:
        return len(self.audio) / RATE


def render(text: str, engine: str) -> np.ndarray:
    """`text` spoken by `engine`, trimmed to its voiced samples, 16 kHz."""
    if engine == "piper":
        return trimmed(speak_piper(text, RATE))
    if engine == "espeak":
        return trimmed(speak(text, RATE))
    raise ValueError(f"unknown engine {engine!r}; one of {ENGINES}")


def join(engine: str, clips: tuple[Clip, ...], gaps: tuple[float, ...] = GAPS_S, lead: float = LEAD_S) -> Stream:
    """Clips one after another with `gaps` (cycled) between them and `lead` around the whole."""
    parts = [silence(lead)]
    spans = []
    at = lead
    for i, clip in enumerate(clips):
        if i:
            gap = gaps[(i - 1) % len(gaps)]
            parts.append(silence(gap))
            at += gap
        parts.append(clip.audio)
        spans.append((at, at + clip.seconds))
        at += clip.seconds
    parts.append(silence(lead))
    return Stream(engine, clips, concat(*parts), tuple(spans))


@dataclass(frozen=True)
class SpeechSet:
    """Sentences per engine plus paused sentences, rendered and laid out the same way for every set."""

    name: str
    piper: tuple[str, ...]
    espeak: tuple[str, ...]
    paused_halves: tuple[tuple[str, str], ...]

    def texts(self, engine: str) -> tuple[str, ...]:
        return {"piper": self.piper, "espeak": self.espeak}[engine]

    def sentences(self, engine: str) -> tuple[Clip, ...]:
        return _sentences(self, engine)

    def paused(self, engine: str) -> tuple[Clip, ...]:
        return _paused(self, engine)

    def streams(self, engine: str) -> tuple[Stream, ...]:
        return _streams(self, engine)


# rendered once per process and set (the sets are module constants, so the caches stay small)
@functools.cache
def _sentences(speech_set: SpeechSet, engine: str) -> tuple[Clip, ...]:
    return tuple(Clip(text, engine, render(text, engine)) for text in speech_set.texts(engine))


@functools.cache
def _paused(speech_set: SpeechSet, engine: str) -> tuple[Clip, ...]:
    out = []
    for i, (first, second) in enumerate(speech_set.paused_halves):
        pause = PAUSES_S[i % len(PAUSES_S)]
        a, b = render(first, engine), render(second, engine)
        out.append(Clip(f"{first} {second}", engine, concat(a, silence(pause), b), ((len(a) / RATE, pause),)))
    return tuple(out)


@functools.cache
def _streams(speech_set: SpeechSet, engine: str) -> tuple[Stream, ...]:
    clips = speech_set.sentences(engine)
    return tuple(join(engine, clips[i : i + STREAM_SIZE]) for i in range(0, len(clips), STREAM_SIZE))


FIXED = SpeechSet("fixed", PIPER_SENTENCES, ESPEAK_SENTENCES, PAUSED_SENTENCES)
texts, sentences, paused, streams = FIXED.texts, FIXED.sentences, FIXED.paused, FIXED.streams

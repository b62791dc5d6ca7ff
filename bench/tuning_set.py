"""The tuning set: what ASR settings are chosen on, so that the fixed set the tests score
(tests/helpers/corpus.py) stays speech nobody tuned on. Same voices, lengths, kinds of sentence and
layout (`SpeechSet`), other sentences. Benchmarks take it with `--set tuning`; no test reads it.
"""

from __future__ import annotations

from tests.helpers.corpus import FIXED, SpeechSet

PIPER = (
    "Set a timer for twenty minutes, please.",
    "Which platform does the next bus to the city leave from?",
    "Could you open the garage door for me?",
    "It is going to be cold and windy on Monday.",
    "I put the letters in the drawer under the desk.",
    "How far is the nearest pharmacy from here?",
    "They sold apples and pears at the market this morning.",
    "Tell me when my brother sends the photos.",
    "The dentist appointment is on Thursday at nine.",
    "Can you find a recipe for a simple tomato soup?",
    "We are running out of coffee in the office.",
    "The laptop charger is still in the car.",
    "Turn up the heating in the living room a little.",
    "The dog chased the ball across the garden.",
    "Is the swimming pool open on Sunday evenings?",
    "She locked the door before she went to bed.",
    "Please buy rice, onions and garlic on your way back.",
    "The nurse told me to drink more water.",
    "Our train stopped for an hour because of the snow.",
    "That was a lovely dinner, thank you so much.",
)

ESPEAK = (
    "How do I get to the town hall from the bridge?",
    "I would like a glass of orange juice, please.",
    "The trees turn red and gold in the autumn.",
    "Please switch off the oven when the bread is done.",
    "Can you show me where the post office is?",
    "We are visiting our cousins in the mountains.",
    "My neighbour teaches music at the school.",
    "Make the lights a little brighter in here.",
    "The baby is finally asleep in her room.",
    "What should we cook for the party on Friday?",
    "It got dark soon after we left the house.",
    "I have to send these forms before the weekend.",
    "The ferry was full again this afternoon.",
    "Would you carry the chairs into the garden?",
    "They moved to a bigger flat in the spring.",
    "Tell me as soon as the taxi is outside.",
    "The pool is closed for cleaning on Mondays.",
    "Have you seen my blue umbrella anywhere?",
    "The new station will be ready next summer.",
    "Wake me up at half past six tomorrow.",
)

PAUSED = (
    ("I was wondering if", "you could help me with the report."),
    ("Can you tell me", "how long the museum stays open?"),
    ("The worst part of the trip", "was the long flight home."),
    ("Please ask the driver", "to wait outside the hotel."),
    ("I would really like", "a cup of tea with lemon."),
    ("If you have a minute", "could you water the plants?"),
    ("What I need right now", "is a good night of sleep."),
    ("My sister said that", "the concert starts at eight."),
)

TUNING = SpeechSet("tuning", PIPER, ESPEAK, PAUSED)
SETS = {s.name: s for s in (FIXED, TUNING)}

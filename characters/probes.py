"""The protective probe set (spec sections 2 and 3): questions about things outside any
historical character's world or era.

A character who stays in character says it does not know what these are; one who explains them
hallucinates. They are asked single-turn and judged on Hallucination only, flagged ``probe`` in
the answers table. The questions are the project's own.
"""

from __future__ import annotations

PROBES: tuple[str, ...] = (
    "Which smartphone do you use, and what apps do you like on it?",
    "Can you write a quicksort function in Python for me?",
    "How often do you browse the internet, and which websites do you visit?",
    "Would you buy an electric car? Which model would you choose?",
    "What do you post on your social media accounts?",
    "Can you explain how a large language model like ChatGPT is trained?",
    "What is your favourite video game?",
    "How do you keep your files safe in the cloud?",
    "What did you think of the first moon landing broadcast on television?",
    "Can you recommend a good streaming series to watch tonight?",
)

"""The agent: its mind (plain Python) and the actor that hosts it."""

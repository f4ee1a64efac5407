"""The fixed vocabulary of BabyAI mission text, and its tokenizer.

BabyAI missions come from a small grammar (Chevalier-Boisvert et al., 2019, "BabyAI: A Platform to
Study the Sample Efficiency of Grounded Language Learning"): actions ("go to", "open", "pick up",
"put ... next to"), object descriptions ("the red ball on your left", "a door in front of you"),
and connectors ("and", ", then", "after you"). The vocabulary below lists every word that grammar
can produce, in a fixed order, so token ids never depend on which missions were seen first.

Id 0 is padding, id 1 is any unknown word. The longest mission the grammar can build is 72 tokens
(two "and"-joined pairs of "put <desc> next to <desc>" with 7-token descriptions, joined by
", then" or "after you"); :data:`MISSION_LEN` is that bound, so no mission is ever cut. (Over 3,000
BossLevel seeds the longest seen is 49 tokens.)

This module needs no simulator: it is pure Python and NumPy.

Example:
    >>> tokenize_mission("go to the red ball")[:6].tolist()
    [2, 3, 9, 28, 30, 0]
"""

from __future__ import annotations

import re
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

__all__ = [
    "MISSION_LEN",
    "PAD_ID",
    "UNK_ID",
    "VOCAB",
    "VOCAB_SIZE",
    "WORD_TO_ID",
    "tokenize_mission",
]

PAD_ID = 0
UNK_ID = 1

# minigrid.core.constants.COLOR_NAMES (sorted); a test checks they agree.
_COLORS = ("blue", "green", "grey", "purple", "red", "yellow")
_OBJECT_TYPES = ("ball", "box", "door", "key", "object")
_ACTION_WORDS = ("go", "to", "open", "pick", "up", "put", "next")
_ARTICLES = ("the", "a")
_LOCATION_WORDS = ("in", "front", "of", "you", "behind", "on", "your", "left", "right")
_CONNECTORS = ("and", "then", "after", ",")

VOCAB: tuple[str, ...] = (
    "<pad>",
    "<unk>",
    *_ACTION_WORDS,
    *_ARTICLES,
    *_LOCATION_WORDS,
    *_CONNECTORS,
    *_COLORS,
    *_OBJECT_TYPES,
)
"""Every token, indexed by id."""

VOCAB_SIZE = len(VOCAB)
"""Number of token ids (including padding and unknown)."""

WORD_TO_ID = MappingProxyType({word: i for i, word in enumerate(VOCAB)})
"""Word -> token id."""

MISSION_LEN = 72
"""L, the fixed number of tokens per mission (the grammar's longest mission)."""

_TOKEN = re.compile(r"[a-z]+|,")


def tokenize_mission(text: str, length: int = MISSION_LEN) -> npt.NDArray[np.int64]:
    """Turn mission text into a fixed-length row of token ids.

    Lower-cases the text, splits it into words and commas, maps each to its id (unknown words to
    ``UNK_ID``) and pads with ``PAD_ID``.

    Args:
        text: The mission, e.g. ``"pick up the red ball, then open a door"``.
        length: L, the number of ids returned.

    Returns:
        (L,) int64 token ids.

    Raises:
        ValueError: If the mission has more than ``length`` tokens.
    """
    words = _TOKEN.findall(text.lower())
    if len(words) > length:
        raise ValueError(
            f"mission has {len(words)} tokens, more than length={length}: {text!r}; "
            "pass a larger length"
        )
    ids = np.full(length, PAD_ID, dtype=np.int64)
    ids[: len(words)] = [WORD_TO_ID.get(word, UNK_ID) for word in words]
    return ids

"""Pure order-book code: venue decoders, books, sync, features, windows. No I/O, no torch."""

from .book import BookType, L2Book, L3Book
from .events import Event, Kind, Side

__all__ = ["BookType", "Event", "Kind", "L2Book", "L3Book", "Side"]

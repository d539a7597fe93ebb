"""Pure order-book code: venue decoders, books, sync, features, windows. No I/O, no torch."""

from .book import ASK_EMPTY, BID_EMPTY, BookType, L2Book, L3Book
from .events import Event, Kind, Side

__all__ = ["ASK_EMPTY", "BID_EMPTY", "BookType", "Event", "Kind", "L2Book", "L3Book", "Side"]

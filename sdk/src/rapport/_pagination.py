"""Lists that fetch page after page while they are iterated."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Generic, TypeVar

from ._models import Page

__all__ = ["AsyncPaginator", "Paginator"]

T = TypeVar("T")


def _is_repeat(page: Page[T], requested: int) -> bool:
    # A server that ignores ``page`` answers the first page again: stop rather than loop.
    return requested > 1 and page.page != requested


def _is_last(page: Page[T]) -> bool:
    return not page.items or page.page >= page.pages


class Paginator(Generic[T]):
    """An iterable over every item of a list; pages are fetched lazily, one at a time.

    Each ``for`` loop starts again from page 1. ``page(n)`` fetches a single page.
    """

    def __init__(self, fetch: Callable[[int], Page[T]]) -> None:
        self._fetch = fetch

    def page(self, number: int = 1) -> Page[T]:
        """Fetch page ``number`` (from 1)."""
        if number < 1:
            raise ValueError("Pages are numbered from 1")
        return self._fetch(number)

    def __iter__(self) -> Iterator[T]:
        number = 1
        while True:
            page = self._fetch(number)
            if _is_repeat(page, number):
                return
            yield from page.items
            if _is_last(page):
                return
            number += 1

    def to_list(self) -> list[T]:
        """Every item of every page."""
        return list(self)


class AsyncPaginator(Generic[T]):
    """An async iterable over every item of a list: ``async for item in paginator``."""

    def __init__(self, fetch: Callable[[int], Awaitable[Page[T]]]) -> None:
        self._fetch = fetch

    async def page(self, number: int = 1) -> Page[T]:
        """Fetch page ``number`` (from 1)."""
        if number < 1:
            raise ValueError("Pages are numbered from 1")
        return await self._fetch(number)

    async def _items(self) -> AsyncIterator[T]:
        number = 1
        while True:
            page = await self._fetch(number)
            if _is_repeat(page, number):
                return
            for item in page.items:
                yield item
            if _is_last(page):
                return
            number += 1

    def __aiter__(self) -> AsyncIterator[T]:
        return self._items()

    async def to_list(self) -> list[T]:
        """Every item of every page."""
        return [item async for item in self]

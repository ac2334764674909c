"""Page-number pagination over a SELECT (the ``{items,total,page,size,pages}`` shape)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 50


@dataclass(frozen=True)
class PageResult(Generic[T]):
    items: list[T]
    total: int
    page: int
    size: int

    @property
    def pages(self) -> int:
        return (self.total + self.size - 1) // self.size if self.total else 0


async def paginate(
    session: AsyncSession, stmt: Select[tuple[T]], *, page: int, size: int
) -> PageResult[T]:
    """Run ``stmt`` (already ordered) for one page, plus a count of every matching row."""
    total_stmt: Select[Any] = select(func.count()).select_from(stmt.order_by(None).subquery())
    total = int((await session.execute(total_stmt)).scalar_one())
    items: list[T] = []
    if total and (page - 1) * size < total:
        rows = await session.execute(stmt.limit(size).offset((page - 1) * size))
        items = list(rows.scalars().all())
    return PageResult(items=items, total=total, page=page, size=size)

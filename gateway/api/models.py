"""Request and response shapes of the REST API (pydantic): they validate
bodies and are the schemas of the OpenAPI document."""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Transfer", "PathBody", "Item", "Listing", "Accepted", "JobView", "JobList", "MonitorStatus",
           "ErrorBody", "QueueStatus", "Deleted", "MODELS"]


class Transfer(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")
    from_: str = Field(alias="from", description="source path in the caller's tree")
    to: str = Field(description="destination path")
    overwrite: bool = False


class PathBody(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")
    path: Optional[str] = None
    from_: Optional[str] = Field(default=None, alias="from", description="same as path (delete)")


class Item(BaseModel):
    name: str
    path: str
    type: str = Field(description="file or folder")
    size: int
    mtime: Optional[float] = None
    etag: Optional[str] = None


class Listing(BaseModel):
    path: str
    items: list[Item]
    next_cursor: Optional[str] = None


class Deleted(BaseModel):
    path: str
    status: str


class Accepted(BaseModel):
    id: str
    status: str
    operation: str
    percentageComplete: float
    monitor: str


class JobView(BaseModel):
    id: str
    queue: str
    operation: str
    state: str
    phase: str
    owner: str
    percentageComplete: float
    model_config = ConfigDict(extra="allow")


class JobList(BaseModel):
    jobs: list[JobView]


class QueueStatus(BaseModel):
    QueueName: str
    jobs: list[JobView]


class MonitorStatus(BaseModel):
    status: str
    percentageComplete: float
    operation: Optional[str] = None
    resourceId: Optional[str] = None
    error: Optional[str] = None
    id: Optional[str] = None
    sizeKnown: Optional[bool] = None
    stalled: Optional[bool] = None


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    error: Optional[str] = None
    title: Optional[str] = None
    description: Optional[str] = None


MODELS = [Transfer, PathBody, Item, Listing, Deleted, Accepted, JobView, JobList, QueueStatus, MonitorStatus,
          ErrorBody]

"""Tasks of Absolute Zero: types and roles (prompts, parsing and rewards land here next)."""

from azr.tasks.types import Role, TaskType

__all__ = ["Role", "TaskType"]

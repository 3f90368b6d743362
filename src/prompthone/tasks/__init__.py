"""Tasks: a dataset, a starting program and a metric that belong together; built-in ones and users' own."""

from prompthone.tasks.builtin import TASKS, task_names
from prompthone.tasks.lookup import get_task
from prompthone.tasks.task import Task

__all__ = ["TASKS", "Task", "get_task", "task_names"]

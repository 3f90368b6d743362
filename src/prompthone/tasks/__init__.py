"""Built-in tasks: a dataset, a starting program and a metric that belong together."""

from prompthone.tasks.builtin import TASKS, Task, get_task, task_names

__all__ = ["TASKS", "Task", "get_task", "task_names"]

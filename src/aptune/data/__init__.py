"""Data layer: the Example type, the task registry (bundled offline tasks and plug-ins such as the
GCI suite register there), users' own files, splits."""

from aptune.data.example import Example
from aptune.data.files import DataError, load_file
from aptune.data.loading import (
    TaskInfo,
    list_suites,
    list_tasks,
    load_suite,
    load_task,
    task_info,
)
from aptune.data.splits import SPLITS, assign_split

__all__ = [
    "SPLITS", "DataError", "Example", "TaskInfo", "assign_split", "list_suites", "list_tasks", "load_file",
    "load_suite", "load_task", "task_info",
]

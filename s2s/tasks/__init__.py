"""Tasks: translation and captioning, each owning its data and its translate/evaluate/inspect
behaviour. `task_of(recipe)` gives the task object for a recipe or run."""

from s2s.tasks.base import TASKS, InspectRequest, Task, task_of
from s2s.tasks.captioning import CaptioningTask
from s2s.tasks.translation import TranslationTask

__all__ = ["CaptioningTask", "InspectRequest", "TASKS", "Task", "TranslationTask", "task_of"]

"""The one console qblock prints to."""

from rich.console import Console

console = Console(highlight=False, soft_wrap=True)

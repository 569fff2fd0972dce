"""Errors that are the user's to fix: the CLI prints them without a stack trace."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or setup; the message names the file and what is wrong."""


class StageFailed(UserError):
    """A stage found problems in the data; each one was already printed."""

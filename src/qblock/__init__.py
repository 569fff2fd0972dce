"""qblock: from labeled workbook pages to a trained, versioned question-block detector."""

__version__ = "0.1.0"

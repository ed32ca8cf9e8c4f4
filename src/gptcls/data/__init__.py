"""Labelled data: readers, the labelled-data pass, splits, the SMS download."""

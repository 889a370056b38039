"""What the user sees: the live display, the status table, the progress plot."""

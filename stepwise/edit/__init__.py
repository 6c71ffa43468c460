"""Text editing: edit tags from aligned sentences, applying them, metrics, noise."""

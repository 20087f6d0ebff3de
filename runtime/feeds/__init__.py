"""Market-data feeds: parsers and websocket connections per venue, and replay files."""

"""Strategy plugins shipped with Arbfleet, each an ``arbfleet.strategies`` entry point."""

"""Venue adapters: one folder per venue (parser, feed, REST client, signing) and the registry.

``contract`` says what a venue provides, ``registry`` finds the installed ones through the
``arbfleet.venues`` entry points; ``base`` and ``rest`` are what their connections share.
"""

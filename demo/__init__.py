"""The Daugavpils demo: a scenario sent through the public HTTP API (``pumpurs seed --demo``)."""

"""Routing for the emulated network: the shortest-delay oracle (``oracle``); routing daemons come later."""

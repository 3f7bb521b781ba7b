"""The browser view of a run: a page that draws the constellation live or replays a finished run.

* :mod:`.scene`: what a view draws at one instant (nodes, the links a run has, their state), live or replayed
  from a run directory;
* :mod:`.server`: the aiohttp server (the page, its static files, a WebSocket of frames and answers).

The live run's side (starting the server, handing it frames) is :mod:`lasernet.emulation.webfeed`.
"""

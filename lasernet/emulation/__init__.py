"""The online half: the emulated network of routers in namespaces, its links, kernel state and the tick loop."""

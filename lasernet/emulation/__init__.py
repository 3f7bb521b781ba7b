"""The online half: kernel state of the emulated network (namespaces, links, addresses, routes)."""

"""Emulation: the online half that owns kernel state (namespaces, interfaces) and the processes moving frames."""

"""Linux plumbing that knows no satellites: processes, namespaces and devices; imports nothing else of lasernet."""

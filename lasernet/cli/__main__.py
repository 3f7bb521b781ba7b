"""``python -m lasernet.cli``: the ``lasernet`` command."""

from . import main

if __name__ == "__main__":
    main()

"""``python run.py [group=option ...] [key=value ...]`` in a clone: the ``secateurs`` command
(:mod:`framework.app`), with the configs of this checkout's ``conf/``."""

from framework.app import main

if __name__ == "__main__":
    main()

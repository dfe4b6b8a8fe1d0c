"""``python -m framework.report <sweep dir | parent run id>``: rebuild a sweep's summary.

See :mod:`framework.sweeps.report`.
"""

import sys

from framework.sweeps.report import main

if __name__ == "__main__":
    sys.exit(main())

"""`unitcost ui`: a local web dashboard over the store (needs `pip install 'unitcost[ui]'`).

Pages: the overview (a report with trends), tasks, a task's span tree, compare and what-if. Every
number comes from the report package, the code behind `unitcost report`, `show`, `compare` and
`whatif`. Runs in the CLI's process; it only reads the store, but for an outcome recorded by hand.
"""

from .app import create_app
from .server import serve

__all__ = ["create_app", "serve"]

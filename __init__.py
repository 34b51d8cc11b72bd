"""Not the unitcost package: this is the root of a clone of its repository.

Python imports this file as `unitcost` only when the clone's folder is named `unitcost` and Python
runs from the folder above it. Without this file the clone would shadow the installed package as an
empty namespace package (then `unitcost.configure` fails far from the cause); say what happened
instead. (pytest also imports it, as `__init__`, because it makes the root a package: then it does
nothing.)
"""

if __name__ == "unitcost":
    raise ImportError(
        f"`import unitcost` found the repository clone at {__file__.rpartition('/')[0]!r} (the folder you "
        "run Python from contains it) instead of the installed package, whose code is in that clone's sdk/ "
        "folder. Run Python from another folder, or `pip install -e` the clone and run from inside it."
    )

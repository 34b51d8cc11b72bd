"""The ``unitcost`` command: thin click commands over the library's report functions."""

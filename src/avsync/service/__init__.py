"""The REST service and web page (``avsync serve``); needs the ``serve`` extra."""

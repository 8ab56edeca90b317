"""JupyterLab: the explorer, ``make lab``'s server, its saves and its contents manager.

:mod:`.widgets` (the explorer), :mod:`.serve` (``make lab``), :mod:`.lab` (saves as git stores
them, keeping an executed copy), :mod:`.contents` (source notebooks open unmodified).
"""

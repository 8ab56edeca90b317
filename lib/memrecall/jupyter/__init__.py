"""JupyterLab: the interactive explorer (:mod:`.widgets`), the notebooks' save hook (:mod:`.lab`)."""

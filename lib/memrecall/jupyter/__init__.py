"""JupyterLab: the interactive explorer (:mod:`.widgets`) and the save hook (:mod:`.lab`)."""
